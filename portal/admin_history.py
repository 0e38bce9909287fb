"""The admin's history in the staff member's language.

Entries are stored in English, as Django stores its own (a message is also matched on: the
"Cancelled" entry says who cancelled a job), and translated when a history page is shown: a
ModelAdmin with `TranslatedHistory` shows each entry through `change_message_shown`."""

from __future__ import annotations

from django.contrib.admin.models import LogEntry
from django.utils.translation import gettext_lazy as _

FIXED = {
    "Cancelled": _("Cancelled"),
    "Retried": _("Retried"),
    "Report re-sent": _("Report re-sent"),
    "Credentials erased": _("Credentials erased"),
    "Personal data erased": _("Personal data erased"),
    "All Mail copied whole": _("All Mail copied whole"),
    "Shown to customers": _("Shown to customers"),
    "Hidden from customers": _("Hidden from customers"),
    "Staff note cleared": _("Staff note cleared"),
}
# Entries that carry a value after a fixed English beginning.
PREFIXED = {
    "Staff note: ": _("Staff note: %(value)s"),
    "Exported as CSV: ": _("Exported as CSV: %(value)s"),
}


def change_message_shown(entry: LogEntry) -> str:
    message = entry.change_message or ""
    if message in FIXED:
        return str(FIXED[message])
    for beginning, sentence in PREFIXED.items():
        if message.startswith(beginning):
            return str(sentence) % {"value": message[len(beginning) :]}
    return entry.get_change_message()  # Django's own entries (JSON) it translates itself


class TranslatedHistory:
    """ModelAdmin mixin: the object's history page shows this project's entries translated."""

    def history_view(self, request, object_id, extra_context=None):
        response = super().history_view(request, object_id, extra_context)
        actions = getattr(response, "context_data", {}).get("action_list") or []
        for entry in actions:
            # The template calls entry.get_change_message: this instance's says it translated.
            entry.get_change_message = lambda entry=entry: change_message_shown(entry)
        return response
