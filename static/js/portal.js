// Progressive enhancement only: every page works without it.
(function () {
  "use strict";

  function setupAccountForm(form) {
    var select = form.querySelector("select[name=provider]");
    var host = form.querySelector("input[name=host]");
    var help = form.querySelector(".provider-help");
    var server = form.querySelector("fieldset.server");
    var port = form.querySelector("input[name=port]");
    var ports = { tls: "993", starttls: "143", none: "143" };
    function update() {
      var option = select.options[select.selectedIndex];
      if (!option) return;
      // A preset whose server the customer cannot change shows its settings as text instead.
      var fixed = option.value !== "" && option.dataset.editable !== "1";
      host.placeholder = option.dataset.host || "";
      if (server) server.hidden = fixed;
      form.querySelectorAll(".preset-server").forEach(function (box) {
        box.hidden = !fixed || box.dataset.provider !== option.value;
      });
      // The chosen service's advice (rendered by the server for every service that has some).
      help.querySelectorAll(".provider-advice").forEach(function (box) {
        box.hidden = box.dataset.provider !== option.value;
      });
    }
    function updatePort() {
      var chosen = form.querySelector("input[name=security]:checked");
      if (port && chosen && ports[chosen.value]) port.placeholder = ports[chosen.value];
    }
    if (select && host && help) {
      select.addEventListener("change", update);
      update();
    }
    form.querySelectorAll("input[name=security]").forEach(function (radio) {
      radio.addEventListener("change", updatePort);
    });
    updatePort();
    form.addEventListener("submit", function () {
      var button = form.querySelector("button[type=submit]");
      var status = form.querySelector(".testing");
      if (status) status.textContent = form.dataset.testingLabel;
      // Disabled after the browser has collected the form, so the click still submits once.
      setTimeout(function () { if (button) button.disabled = true; }, 0);
    });
  }

  function setupProgress(box) {
    var url = box.dataset.progressUrl;
    if (!url) return;
    var done = ["finished", "failed", "cancelled"];
    function refresh() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (state) {
          if (!state) return;
          // Ended while the page was open: reload it for what an ended copy shows (the report,
          // what was not copied, "Start another copy").
          if (done.indexOf(state.status) !== -1 && done.indexOf(box.dataset.status) === -1) {
            window.location.reload();
            return;
          }
          box.querySelectorAll("[data-field]").forEach(function (node) {
            var value = state[node.dataset.field];
            if (value === undefined) return;
            node.textContent = value === "" ? (node.tagName === "DD" ? "—" : "") : value;
          });
          var bar = box.querySelector("progress");
          if (bar) { bar.value = state.percent; bar.textContent = state.percent + "%"; }
          box.className = "state state-" + state.status;
          if (done.indexOf(state.status) === -1) setTimeout(refresh, 2000);
        })
        .catch(function () { setTimeout(refresh, 5000); });
    }
    setTimeout(refresh, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.account").forEach(setupAccountForm);
    document.querySelectorAll(".state[data-progress-url]").forEach(setupProgress);
  });
})();
