"""Say every loss: the customer's status page and the staff's job page list the messages that were
not copied and count what was stored inexactly, in the reader's language; the report email counts
them per folder and carries no text from a mailbox (subjects, keywords, server answers) beyond
folder names, quoted and escaped.

The jobs here carry exactly the events the engine emits (one of each kind), as the worker
records them: JobEvent(job, kind, folder, detail)."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client
from django.utils import translation

from apps.sync import losses, services
from apps.sync.links import status_url
from apps.sync.models import JobStatus, SyncJob

pytestmark = pytest.mark.django_db

LANGUAGES = ["en", "fr", "pt", "es", "de", "it"]
HOSTILE_SUBJECT = "<script>alert('x')</script> Invoice\x1b[31m\u202eexe.pdf"

# What the engine sends for one job: one event of each kind.
ENGINE_EVENTS = [
    ("folder_remapped", "Work", {"before": "INBOX.Work", "to": "INBOX/Work"}),
    ("archived_found", "[Gmail]/All Mail", {"messages": 42, "destination": "Archive", "method": "x-gm-msgid"}),
    (
        "message_skipped",
        "INBOX",
        {
            "uid": 7,
            "date": "Tue, 04 Mar 2025 09:15:00 +0100",
            "subject": "Holiday photos",
            "size": 60_000_000,
            "reason": "too_large",
        },
    ),
    (
        "message_skipped",
        "Archives/2019",
        {
            "uid": 12,
            "date": "Mon, 02 Dec 2019 17:40:00 +0000",
            "subject": "Scanned contract",
            "size": 31_000_000,
            "reason": "rejected_too_large",
        },
    ),
    (
        "message_failed",
        "INBOX",
        {
            "uid": 9,
            "date": "Wed, 05 Mar 2025 08:00:00 +0000",
            "subject": HOSTILE_SUBJECT,
            "size": 2048,
            "reason": "Message contains invalid header",
        },
    ),
    ("keyword_dropped", "INBOX", {"keywords": ["$Project", "Important"]}),
    (
        "message_altered",
        "Sent",
        {
            "uid": 3,
            "date": "Thu, 06 Mar 2025 12:30:00 +0000",
            "subject": "Budget 2025 draft",
            "size": 4096,
            "reason": "headers_rewritten",
        },
    ),
    ("folder_refused", "nul_name", {"side": "source", "reason": "control"}),
    ("folder_renamed", "Projects/A.B", {"to": "Projects/A_B", "reason": "separator"}),
    (
        "summary",
        "",
        {
            "not_copied": 3,
            "flags_dropped": 5,
            "altered": 1,
            "archived": {"folder": "Archive", "found": 42, "copied": 42},
        },
    ),
]

# Per language: the reasons of the three messages not copied, the altered message's reason, the
# first words of the sentences a customer must read, and English sentences that must not remain.
EXPECTED = {
    "en": {
        "too_large": "too large for the destination",
        "rejected": "refused by the destination because of its size",
        "failed": "refused by the destination: Message contains invalid header",
        "altered": "the destination rewrote some of its headers",
        "not_copied": "3 messages were not copied:",
        "flags": "5 messages were copied without some of their labels or flags, which the destination "
        "cannot store: $Project, Important",
        "changed": "1 message was copied but changed by the destination",
        "archived": "42 archived messages (without a label) were copied into Archive.",
    },
    "fr": {
        "too_large": "trop volumineux pour la destination",
        "rejected": "refusé par la destination à cause de sa taille",
        "failed": "refusé par la destination : Message contains invalid header",
        "altered": "la destination a réécrit certains de ses en-têtes",
        "not_copied": "3 messages n’ont pas été copiés :",
        "flags": "5 messages ont été copiés sans certaines de leurs étiquettes ou de leurs indicateurs, que la "
        "destination ne peut pas enregistrer : $Project, Important",
        "changed": "1 message a été copié mais modifié par la destination",
        "archived": "42 messages archivés (sans étiquette) ont été copiés dans Archive.",
    },
    "pt": {
        "too_large": "demasiado grande para o destino",
        "rejected": "recusada pelo destino devido ao tamanho",
        "failed": "recusada pelo destino: Message contains invalid header",
        "altered": "o destino reescreveu alguns dos seus cabeçalhos",
        "not_copied": "3 mensagens não foram copiadas:",
        "flags": "5 mensagens foram copiadas sem algumas das suas etiquetas ou sinalizadores, que o destino "
        "não consegue guardar: $Project, Important",
        "changed": "1 mensagem foi copiada, mas alterada pelo destino",
        "archived": "42 mensagens arquivadas (sem etiqueta) foram copiadas para Archive.",
    },
    "es": {
        "too_large": "demasiado grande para el destino",
        "rejected": "rechazado por el destino por su tamaño",
        "failed": "rechazado por el destino: Message contains invalid header",
        "altered": "el destino reescribió algunos de sus encabezados",
        "not_copied": "3 mensajes no se copiaron:",
        "flags": "5 mensajes se copiaron sin algunas de sus etiquetas o marcas, que el destino "
        "no puede guardar: $Project, Important",
        "changed": "1 mensaje se copió, pero el destino lo modificó",
        "archived": "42 mensajes archivados (sin etiqueta) se copiaron en Archive.",
    },
    "de": {
        "too_large": "zu groß für das Ziel",
        "rejected": "vom Ziel wegen ihrer Größe abgelehnt",
        "failed": "vom Ziel abgelehnt: Message contains invalid header",
        "altered": "das Ziel hat einige ihrer Kopfzeilen umgeschrieben",
        "not_copied": "3 Nachrichten wurden nicht kopiert:",
        "flags": "5 Nachrichten wurden ohne einige ihrer Labels oder Markierungen kopiert, die das Ziel "
        "nicht speichern kann: $Project, Important",
        "changed": "1 Nachricht wurde kopiert, aber vom Ziel verändert",
        "archived": "42 archivierte Nachrichten (ohne Label) wurden nach Archive kopiert.",
    },
    "it": {
        "too_large": "troppo grande per la destinazione",
        "rejected": "rifiutato dalla destinazione per le sue dimensioni",
        "failed": "rifiutato dalla destinazione: Message contains invalid header",
        "altered": "la destinazione ha riscritto alcune delle sue intestazioni",
        "not_copied": "3 messaggi non sono stati copiati:",
        "flags": "5 messaggi sono stati copiati senza alcune delle loro etichette o contrassegni, che la "
        "destinazione non può memorizzare: $Project, Important",
        "changed": "1 messaggio è stato copiato, ma modificato dalla destinazione",
        "archived": "42 messaggi archiviati (senza etichetta) sono stati copiati in Archive.",
    },
}
ENGLISH_SENTENCES = [
    "messages were not copied",
    "too large for the destination",
    "refused by the destination",
    "rewrote some of its headers",
    "archived messages (without a label)",
    "cannot store",
    "Data copied",
]


def finished_job(make_account, *, language: str = "en", events=ENGINE_EVENTS) -> SyncJob:
    job = services.job_create(
        source=make_account("alice@example.org"), destination=make_account("alice@example.net"), language=language
    )
    # The typed destination address receives the report once its owner confirmed it.
    services.job_confirm_report_address(job=job, address="alice@example.net")
    run = services.job_claim(job_id=job.pk, worker_name="w")
    for kind, folder, detail in events:
        services.job_record_event(job_id=job.pk, kind=kind, folder=folder, detail=detail)
    services.job_finish(
        job_id=job.pk,
        run=run,
        status=JobStatus.FINISHED,
        counters=services.JobCounters(
            folders_total=5,
            folders_done=5,
            messages_total=100,
            messages_copied=97,
            messages_skipped=2,
            messages_failed=1,
            bytes_copied=5_000_000,
        ),
    )
    job.refresh_from_db()
    return job


def sent_report(job: SyncJob) -> tuple[str, str, str]:
    mail.outbox.clear()
    services.job_send_report(job=job, again=True)
    (message,) = mail.outbox
    (html, _type) = message.alternatives[0]
    return message.subject, message.body, html


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def visible_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


MAILBOX_TEXT = ["Holiday photos", "Scanned contract", "Invoice", "Budget 2025 draft", "invalid header", "$Project"]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_status_page_lists_every_loss_in_the_customers_language(make_account, lang):
    job = finished_job(make_account, language=lang)
    expected = EXPECTED[lang]
    with translation.override(lang):
        link = status_url(job)
    text = visible_text(Client().get(link).content.decode())

    # The three messages not copied, with subject, folder and translated reason.
    assert expected["not_copied"] in text
    assert re.search(r"Holiday photos.{0,80}INBOX.{0,10}" + re.escape(expected["too_large"]), text)
    assert re.search(r"Scanned contract.{0,80}Archives/2019.{0,10}" + re.escape(expected["rejected"]), text)
    assert re.search(r"Invoice.{0,80}" + re.escape(expected["failed"]), text)
    # Labels the destination cannot store are named, not "—".
    assert expected["flags"] in text
    assert "—" not in expected["flags"] and "label —" not in text
    # The altered message and the archived mail.
    assert expected["changed"] in text
    assert re.search(r"Budget 2025 draft.{0,80}Sent.{0,10}" + re.escape(expected["altered"]), text)
    assert expected["archived"] in text
    assert "INBOX/Work" not in text, "a remapped folder is not a loss"
    if lang != "en":
        for english in ENGLISH_SENTENCES:
            assert english not in text, f"untranslated in {lang}: {english!r}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_report_email_counts_the_losses_per_folder_without_mailbox_text(make_account, lang):
    job = finished_job(make_account, language=lang)
    expected = EXPECTED[lang]
    _subject, text, html = sent_report(job)

    assert expected["not_copied"] in lines(text)
    listed = [line for line in lines(text) if line.startswith("- ")]
    # One line per folder: its name, quoted, and how many of its messages.
    assert any("INBOX" in line and "2" in line for line in listed), listed
    assert any("Archives/2019" in line and "1" in line for line in listed), listed
    assert any("Sent" in line and "1" in line for line in listed), listed
    assert expected["changed"] in text
    # The flags sentence without the keywords (text from the mailbox).
    assert expected["flags"].rsplit(":", 1)[0].rstrip() in text
    # The folder name quoted: “Archive”, « Archive »…
    assert re.search(re.escape(expected["archived"]).replace("Archive", r"\W{1,2}Archive\W{1,2}"), text)
    for sentence in (expected["not_copied"], expected["changed"]):
        assert sentence in visible_text(html)
    for mailbox_text in MAILBOX_TEXT:
        assert mailbox_text not in text and mailbox_text not in html, mailbox_text
    assert "remapped" not in text and "INBOX/Work" not in text, "a remapped folder is not a loss"
    if lang != "en":
        for english in ENGLISH_SENTENCES:
            assert english not in text, f"untranslated in {lang}: {english!r}"
            assert english not in visible_text(html), f"untranslated in {lang}: {english!r}"


def test_report_email_carries_no_subject_a_server_wrote(make_account):
    """A spammer's server makes a message fail whose subject is a lure: the report email, which
    goes to an address, not a mailbox, names its folder and count, never the subject."""
    lure = {
        "uid": 1,
        "date": None,
        "subject": "CLICK http://evil.example",
        "size": 10,
        "reason": "CLICK http://evil.example",
    }
    events = [("message_failed", "INBOX", lure), ("summary", "", {"not_copied": 1})]
    _subject, text, html = sent_report(finished_job(make_account, events=events))
    assert "evil.example" not in text + html
    assert "- “INBOX”: 1 message" in lines(text)
    assert "1 message was not copied:" in lines(text)
    assert "The page of your copy lists these messages." in lines(text)


def test_hostile_folder_names_are_escaped_in_html_and_cleaned_and_quoted_in_text(make_account):
    folder = "<b>Evil</b>\x1b[31m\u202eexe"
    events = [
        ("message_failed", folder, {"uid": 1, "date": None, "subject": "s", "size": 10, "reason": "NO"}),
        ("summary", "", {"not_copied": 1}),
    ]
    _subject, text, html = sent_report(finished_job(make_account, events=events))
    assert "<b>Evil" not in html and "&lt;b&gt;Evil&lt;/b&gt;" in html
    assert "\x1b" not in text + html and "\u202e" not in text + html, "control and direction characters go"
    assert "- “<b>Evil</b> [31m exe”: 1 message" in lines(text)


def test_hostile_subject_is_escaped_and_cleaned_on_the_status_page(make_account):
    job = finished_job(make_account)
    body = Client().get(status_url(job)).content.decode()
    assert "<script>alert" not in body
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Invoice" in body
    assert "\x1b" not in body and "\u202e" not in body, "control and direction characters go"
    with translation.override("en"):
        (section,) = [section for section in losses.job_losses(job) if section.kind == "not_copied"]
    (line,) = [line for line in section.lines if "Invoice" in line]
    assert line.startswith("“<script>alert('x')</script> Invoice [31m exe.pdf”")


def test_long_subjects_are_shortened_and_the_list_is_capped(make_account, monkeypatch):
    monkeypatch.setattr(losses, "MAX_LISTED_PROBLEMS", 2)
    events = [
        ("message_failed", "INBOX", {"uid": uid, "date": None, "subject": "x" * 500, "size": 10, "reason": "NO"})
        for uid in range(1, 6)
    ]
    # A later run meets message 1 again: it is listed once, with what the later run said.
    events.insert(
        1, ("message_failed", "INBOX", {"uid": 1, "date": "", "subject": "again", "size": 10, "reason": "NO"})
    )
    job = finished_job(make_account, language="fr", events=[*events, ("summary", "", {"not_copied": 5})])
    with translation.override("fr"):
        (section,) = [section for section in losses.job_losses(job) if section.kind == "not_copied"]
    listed = section.lines
    assert len(listed) == 2, "capped"
    assert listed[0].startswith("« again » (date inconnue) dans INBOX — refusé par la destination : NO")
    subject = re.search("« (.*) »", listed[1]).group(1)
    assert len(subject) <= 120 and subject.endswith("…"), "a long subject is shortened"
    assert section.more == "… et 3 autres."


def test_the_report_emails_list_of_folders_is_capped(make_account, monkeypatch):
    monkeypatch.setattr(losses, "MAX_LISTED_PROBLEMS", 2)
    events = [
        ("message_failed", f"Folder {n}", {"uid": 1, "date": None, "subject": "x", "size": 10, "reason": "NO"})
        for n in range(5)
    ]
    job = finished_job(make_account, events=[*events, ("summary", "", {"not_copied": 5})])
    _subject, text, _html = sent_report(job)
    assert [line for line in lines(text) if line.startswith("- ")] == [
        "- “Folder 0”: 1 message",
        "- “Folder 1”: 1 message",
    ]
    assert "… and 3 more." in lines(text)


def test_a_failed_job_says_so_far(make_account):
    job = services.job_create(source=make_account("bob@example.org"), destination=make_account("bob@example.net"))
    services.job_confirm_report_address(job=job, address="bob@example.net")
    run = services.job_claim(job_id=job.pk, worker_name="w")
    services.job_record_event(job_id=job.pk, kind=ENGINE_EVENTS[2][0], folder="INBOX", detail=ENGINE_EVENTS[2][2])
    services.job_finish(
        job_id=job.pk,
        run=run,
        status=JobStatus.FAILED,
        counters=services.JobCounters(messages_total=10, messages_copied=3, messages_skipped=1),
        error_code="timeout",
    )
    job.refresh_from_db()
    _subject, text, _html = sent_report(job)
    assert "1 message could not be copied so far:" in lines(text)
    assert "- “INBOX”: 1 message" in lines(text)
    assert "Holiday photos" not in text


def test_erased_job_keeps_its_counts_but_lists_nothing(make_account):
    job = finished_job(make_account)
    services.job_erase_personal_data(job=job)
    with translation.override("en"):
        sections = losses.job_losses(job)
    (not_copied,) = [section for section in sections if section.kind == "not_copied"]
    assert not_copied.heading == "3 messages were not copied:"
    assert not_copied.lines == [] and not_copied.more == ""
    assert not any("Holiday" in section.heading for section in sections)


def test_status_page_shows_the_losses_behind_the_private_link_only(make_account):
    job = finished_job(make_account, language="fr")
    browser = Client()
    with translation.override("fr"):
        link = status_url(job)
    page = browser.get(link)
    body = page.content.decode()
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    assert EXPECTED["fr"]["not_copied"] in body
    assert "Holiday photos" in body and EXPECTED["fr"]["too_large"] in body
    assert "Budget 2025 draft" in body and EXPECTED["fr"]["archived"] in body
    assert EXPECTED["fr"]["flags"] in body
    assert "<script>alert" not in body
    # The progress JSON keeps its contract: state and counts, no subjects.
    progress = browser.get(link + "progress/")
    state = progress.json()
    assert (state["status"], state["messages_skipped"], state["messages_failed"]) == ("finished", 2, 1)
    assert "Holiday" not in progress.content.decode()
    # The lookup by address (anyone who knows it) shows the state, never the subjects.
    lookup = browser.post("/fr/status/", {"address": "alice@example.org"}).content.decode()
    assert "Holiday photos" not in lookup and "Terminé" in lookup


def test_status_page_of_a_running_job_lists_nothing_yet(make_account):
    job = services.job_create(source=make_account("carol@example.org"), destination=make_account("carol@example.net"))
    run = services.job_claim(job_id=job.pk, worker_name="w")
    services.job_record_event(job_id=job.pk, kind=ENGINE_EVENTS[2][0], folder="INBOX", detail=ENGINE_EVENTS[2][2])
    services.job_record_progress(
        job_id=job.pk, run=run, counters=services.JobCounters(messages_total=10, messages_skipped=1)
    )
    body = Client().get(status_url(job)).content.decode()
    assert "In progress" in body and "Holiday photos" not in body


def test_admin_job_page_shows_the_losses_in_the_staffs_language(admin_client, make_account, settings):
    job = finished_job(make_account, language="fr")
    settings.LANGUAGE_CODE = "de"  # the back office speaks the site's language (its URLs have no prefix)
    page = admin_client.get(f"/admin/sync/syncjob/{job.pk}/change/")
    body = page.content.decode()
    assert page.status_code == 200
    # The staff's language (German) for the losses, the customer's (French) for the report.
    assert EXPECTED["de"]["not_copied"] in body
    assert "Holiday photos" in body and EXPECTED["de"]["too_large"] in body
    assert EXPECTED["de"]["changed"] in body and EXPECTED["de"]["archived"] in body
    assert EXPECTED["fr"]["not_copied"] in body
    assert "<script>alert" not in body and "&lt;script&gt;alert" in body


def test_a_message_refused_by_an_earlier_run_and_copied_since_is_not_listed(make_account):
    """Each engine run tries again what the one before left behind: only the last run's refusals
    are losses (the first run refused two messages; the retry copied one of them)."""

    def refused(uid, subject):
        detail = {"uid": uid, "date": None, "subject": subject, "size": 10, "reason": "Try again later"}
        return ("message_failed", "INBOX", detail)

    def summary(count):
        return ("summary", "", {"not_copied": count, "flags_dropped": 0, "altered": 0, "archived": {}})

    events = [
        refused(7, "Copied on retry"),
        refused(9, "Still refused"),
        summary(2),
        refused(9, "Still refused"),
        summary(1),
    ]
    job = finished_job(make_account, events=events)
    _subject, text, _html = sent_report(job)
    assert "1 message was not copied:" in lines(text)
    assert "- “INBOX”: 1 message" in lines(text)
    with translation.override("en"):
        (section,) = [section for section in losses.job_losses(job) if section.kind == "not_copied"]
    assert any("Still refused" in line for line in section.lines)
    assert not any("Copied on retry" in line for line in section.lines)
