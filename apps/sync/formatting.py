"""Numbers, sizes and durations as customers read them, in the active language.

One unit system everywhere (status pages, reports, the synchronize step): decimal SI units
(1 kB = 1,000 bytes, 1 MB = 1,000,000 bytes) written with the language's own words ("ko", "Mo",
"Go" in French), numbers with the language's decimal mark and thousands separator, durations in
seconds under a minute, then minutes, then hours and minutes."""

from __future__ import annotations

import math

from django.utils import formats
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

NBSP = "\u00a0"

# Decimal SI: what disks, networks and most mail providers count in.
_UNITS = (
    (1_000_000_000_000, lambda size: _("%(size)s TB") % {"size": size}),
    (1_000_000_000, lambda size: _("%(size)s GB") % {"size": size}),
    (1_000_000, lambda size: _("%(size)s MB") % {"size": size}),
    (1_000, lambda size: _("%(size)s kB") % {"size": size}),
)


def number_text(value: int | float, decimals: int | None = None) -> str:
    """A number with the active language's decimal mark and thousands separator."""
    return formats.number_format(value, decimals, use_l10n=True, force_grouping=True)


def count_text(value) -> str:
    try:
        return number_text(int(value or 0), 0)
    except (TypeError, ValueError):
        return "—"


def size_text(nbytes) -> str:
    """A size in decimal SI units: "850 bytes", "12.3 kB", "444.3 MB" ("444,3 Mo" in French)."""
    try:
        nbytes = max(0, int(nbytes or 0))
    except (TypeError, ValueError):
        return "—"
    if nbytes >= 1000:
        for index, (unit, words) in enumerate(_UNITS):
            if nbytes < unit:
                continue
            value = round(nbytes / unit, 1)
            if value >= 1000 and index > 0:  # 999,960 kB is "1.0 GB", not "1,000.0 MB"
                unit, words = _UNITS[index - 1]
                value = round(nbytes / unit, 1)
            return words(number_text(value, 1)).replace(" ", NBSP)
    text = ngettext("%(size)s byte", "%(size)s bytes", nbytes) % {"size": number_text(nbytes, 0)}
    return text.replace(" ", NBSP)


def duration_text(seconds) -> str:
    """How long something took: "2 seconds", "14 minutes", "3 hours", "2 h 05 min"."""
    seconds = max(0, round(float(seconds or 0)))
    if seconds < 60:
        return ngettext("%(count)s second", "%(count)s seconds", seconds) % {"count": seconds}
    minutes = round(seconds / 60)
    if minutes < 60:
        return ngettext("%(count)s minute", "%(count)s minutes", minutes) % {"count": minutes}
    hours, minutes = divmod(minutes, 60)
    if not minutes:
        return ngettext("%(count)s hour", "%(count)s hours", hours) % {"count": number_text(hours, 0)}
    return _("%(hours)s h %(minutes)02d min") % {"hours": number_text(hours, 0), "minutes": minutes}


def approximate_duration_text(seconds) -> str:
    """An estimate: "less than a minute", "about 3 minutes", "about 2 h 10 min" (rounded up, to
    five minutes past an hour: an estimate must not promise more precision than it has)."""
    seconds = max(0.0, float(seconds or 0))
    if seconds < 60:
        return _("less than a minute")
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return ngettext("about %(count)s minute", "about %(count)s minutes", minutes) % {"count": minutes}
    minutes = 5 * math.ceil(minutes / 5)
    hours, minutes = divmod(minutes, 60)
    if not minutes:
        return ngettext("about %(count)s hour", "about %(count)s hours", hours) % {"count": number_text(hours, 0)}
    return _("about %(hours)s h %(minutes)02d min") % {"hours": number_text(hours, 0), "minutes": minutes}


def folder_text(name: str, separator: str | None) -> str:
    """A source folder's decoded name as customers read it: its parts separated by "/" whatever
    the server's own separator ("INBOX.Archives.2020" -> "INBOX/Archives/2020")."""
    if not name:
        return ""
    if separator is None:
        # No separator known (older events): the usual dotted form of servers that put every
        # folder under "INBOX." is the one worth translating.
        separator = "." if name.startswith("INBOX.") else "/"
    if separator and separator != "/":
        return "/".join(name.split(separator))
    return name
