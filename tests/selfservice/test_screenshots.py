"""Every customer step fits a phone (390 px: nothing wider than the screen) and a desktop, in
French, from the first form to the finished copy; the staff's three main pages render for an
operator.  Each page is photographed on the way: the README's pictures are these
(`IMAPCOPY_SCREENSHOTS_DIR=docs/screenshots ./dev test tests/selfservice/test_screenshots.py`;
without it they go to test-artifacts/screens/)."""

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from apps.sync.models import JobStatus, SyncJob
from tests.conftest import REPO
from tests.selfservice.test_browser import fill_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 390, "height": 844}
ADMIN = {"width": 1440, "height": 900}
OUT = Path(os.environ.get("IMAPCOPY_SCREENSHOTS_DIR") or REPO / "test-artifacts" / "screens")


def photograph(page, name: str) -> dict:
    """A desktop picture, then the same page at phone width: how much wider than the screen it
    is there (0 when it fits), and a phone picture."""
    OUT.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(OUT / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    overflow = page.evaluate(
        "() => { const w = window.innerWidth; const wide = [...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > w + 1 && getComputedStyle(e).position !== 'fixed')"
        ".map(e => e.tagName.toLowerCase() + (e.className ? '.' + String(e.className).split(' ')[0] : ''));"
        " return {page: document.documentElement.scrollWidth - w, wide: wide.slice(0, 5)}; }"
    )
    page.screenshot(path=str(OUT / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)
    return overflow


def test_every_customer_step_fits_a_phone_screen(browser, live_server, source_user, destination_user, run_worker):
    (source_server, source), (destination_server, destination) = source_user, destination_user
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    too_wide = {}

    def step(name):
        overflow = photograph(page, name)
        if overflow["page"] > 0 or overflow["wide"]:
            too_wide[name] = overflow

    page.goto(f"{live_server.url}/fr/")
    step("1-source-form-fr")
    fill_account(page, source_server, source)
    page.click("button[type=submit].primary")
    page.wait_for_selector("section.success")
    step("2-source-connected-fr")
    page.click("a.button.primary")
    fill_account(page, destination_server, destination)
    page.click("button[type=submit].primary")
    page.wait_for_selector("section.success")
    step("3-destination-connected-fr")
    page.click("a.button.primary")
    step("4-synchronize-fr")
    page.click("button.primary.big")
    page.wait_for_selector(".state")
    step("5-queued-fr")
    worker = run_worker()
    assert worker.returncode == 0, worker.stderr
    assert SyncJob.objects.get().status == JobStatus.FINISHED
    page.wait_for_selector(".state.state-finished", timeout=15_000)
    step("6-finished-fr")
    page.goto(f"{live_server.url}/fr/status/")
    page.fill("input[type=email][name=address], input[type=text][name=address]", f"{source.login}@example.org")
    page.click("button[name=show]")
    page.wait_for_selector(".state")
    step("7-lookup-fr")
    context.close()
    assert too_wide == {}, too_wide


def test_the_staff_pages_after_a_copy(browser, live_server, source_user, destination_user, run_worker, client):
    """The jobs list, the job's page and the operations page, as an operator sees them after a
    real copy: each names the job's source mailbox (the operations page, its provider)."""
    (source_server, source), (destination_server, destination) = source_user, destination_user
    from tests.selfservice.conftest import account_form

    client.post("/", account_form(source_server, source))
    client.post("/destination/", account_form(destination_server, destination))
    client.post("/synchronize/", follow=True)
    assert run_worker().returncode == 0
    job = SyncJob.objects.get()
    assert job.status == JobStatus.FINISHED
    User.objects.create_user("operator-screens", password="a long pass phrase", is_staff=True).groups.add(
        Group.objects.get(name="operators")
    )
    context = browser.new_context(viewport=ADMIN)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/sync/syncjob/")
    page.fill("input[name=username]", "operator-screens")
    page.fill("input[name=password]", "a long pass phrase")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    OUT.mkdir(parents=True, exist_ok=True)
    pages = {
        "admin-jobs": "/admin/sync/syncjob/",
        "admin-job": f"/admin/sync/syncjob/{job.pk}/change/",
        "admin-operations": reverse("admin:sync_operations"),
    }
    for name, path in pages.items():
        response = page.goto(f"{live_server.url}{path}")
        assert response.ok, (name, response.status)
        page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
        if name != "admin-operations":
            assert source.login in page.inner_text("#content"), name
    context.close()
