"""The gettext catalogs under locale/: complete, in step with the source code, and served by Django.

- every catalog compiles with ``msgfmt --check`` and has no untranslated or fuzzy entry;
- ``makemessages``, run on a copy of the working tree, finds no string the committed catalogs lack
  (so a new ``{% translate %}`` or ``_()`` without a translation fails here, naming the string);
- Django, with the compiled catalogs, answers a known string in each language.

To update the catalogs after changing strings, run the command in ``MAKEMESSAGES`` from the
repository root (``.venv/bin/python manage.py makemessages ...``), translate, then
``.venv/bin/python manage.py compilemessages --ignore='.venv/*'``.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import translation

REPO = Path(__file__).resolve().parent.parent
LOCALE = REPO / "locale"
# Every language the portal offers except English, the source language: adding one to
# settings.LANGUAGES without its catalog fails here.
LANGUAGES = [code for code, _name in django_settings.LANGUAGES if code != "en"]
# The plural rule each catalog's header must carry; pt uses (n != 1) like Django's own pt catalog
# (so "0 mensagens", natural in Portugal and Brazil alike).
PLURAL_FORMS = {
    "fr": "nplurals=2; plural=(n > 1);",
    "pt": "nplurals=2; plural=(n != 1);",
    "es": "nplurals=2; plural=(n != 1);",
    "de": "nplurals=2; plural=(n != 1);",
    "it": "nplurals=2; plural=(n != 1);",
}

# The command translators run (from the repository root), minus "manage.py".
MAKEMESSAGES = [
    "makemessages",
    *(f"--locale={lang}" for lang in LANGUAGES),
    "--ignore=.venv/*",
    "--ignore=var/*",
    "--ignore=tests/*",
    "--ignore=bench/*",
    "--add-location=file",
]

# Top-level entries of the working tree that the copy for makemessages leaves out.
TOP_LEVEL_SKIPPED = {".git", ".venv", "var", ".pytest_cache", ".ruff_cache", "test-artifacts", "static-collected"}


def po_file(root: Path, lang: str) -> Path:
    return root / lang / "LC_MESSAGES" / "django.po"


def catalog_entries(path: Path) -> dict[tuple[str | None, str, str | None], str]:
    """The live entries of a .po file: (msgctxt, msgid, msgid_plural) -> msgid.

    Comments are skipped, and so are obsolete ("#~") entries; the header (empty msgid) is left out.
    PO string escapes (\\n, \\t, \\", \\\\) are those of Python literals."""
    entries: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    field: str | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            field = None
            continue
        if line.startswith('"'):
            if current is not None and field is not None:
                current[field] += ast.literal_eval(line)
            continue
        keyword, _space, value = line.partition(" ")
        if keyword == "msgctxt" or (keyword == "msgid" and (current is None or "msgid" in current)):
            current = {}
            entries.append(current)
        if current is None:
            raise AssertionError(f"{path}: {keyword} before any msgid")
        field = keyword
        current[field] = ast.literal_eval(value)
    return {
        (entry.get("msgctxt"), entry["msgid"], entry.get("msgid_plural")): entry["msgid"]
        for entry in entries
        if entry.get("msgid")
    }


def require_gettext_tools() -> None:
    missing = [tool for tool in ("msgfmt", "xgettext", "msgmerge") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: install Debian's gettext package (./dev test does)")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_catalog_is_complete_and_valid(lang):
    require_gettext_tools()
    path = po_file(LOCALE, lang)
    assert path.is_file(), f"{path} is missing"
    result = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", os.devnull, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C", "LANGUAGE": ""},
        check=False,
    )
    report = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, f"msgfmt --check failed on {path}:\n{report}"
    assert "untranslated" not in report, f"{path}: {report}"
    assert "fuzzy" not in report, f"{path}: {report}"

    text = path.read_text(encoding="utf-8")
    assert "#, fuzzy" not in text, f"{path} still has a fuzzy flag (the header's counts too)"
    assert f'"Language: {lang}\\n"' in text, f"{path}: the header must say Language: {lang}"
    assert "charset=UTF-8" in text, f"{path}: the header must declare UTF-8"
    plural_forms = PLURAL_FORMS.get(lang, "nplurals=")
    assert f'"Plural-Forms: {plural_forms}' in text, f"{path}: the header must declare Plural-Forms: {plural_forms}"


def _skip_in_copy(directory: str, names: list[str]) -> set[str]:
    skipped = {name for name in names if name == "__pycache__" or name.endswith((".pyc", ".mo"))}
    if Path(directory).resolve() == REPO:
        skipped |= TOP_LEVEL_SKIPPED & set(names)
    return skipped


def test_catalogs_have_every_string_of_the_source(tmp_path):
    """makemessages on a copy of the working tree must find nothing the committed catalogs lack."""
    require_gettext_tools()
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=_skip_in_copy, symlinks=True)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # Settings insist on these when DEBUG is off; makemessages itself needs neither.
    env["SECRET_KEY"] = django_settings.SECRET_KEY
    env["CREDENTIAL_KEYS"] = ",".join(django_settings.CREDENTIAL_KEYS)
    # manage.py puts its own folder first on sys.path, so the copy's settings (and so its
    # LOCALE_PATHS) are the ones used: the committed catalogs are never touched.
    result = subprocess.run(
        [sys.executable, "manage.py", *MAKEMESSAGES],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"makemessages failed:\n{result.stdout}\n{result.stderr}"

    missing: dict[str, list[str]] = {}
    for lang in LANGUAGES:
        committed = catalog_entries(po_file(LOCALE, lang))
        regenerated = catalog_entries(po_file(copy / "locale", lang))
        lacking = sorted(regenerated[key] for key in regenerated.keys() - committed.keys())
        if lacking:
            missing[lang] = lacking
    assert not missing, (
        "The source has strings that the catalogs lack; run "
        f"`.venv/bin/python manage.py {' '.join(MAKEMESSAGES)}`, translate them, and commit:\n"
        + "\n".join(f"  {lang}: {msgid!r}" for lang, msgids in missing.items() for msgid in msgids)
    )


@pytest.fixture(scope="module")
def compiled_locale(tmp_path_factory) -> Path:
    """The committed catalogs compiled afresh, so a stale or missing .mo cannot hide a fault."""
    require_gettext_tools()
    root = tmp_path_factory.mktemp("locale")
    for lang in EXPECTED:
        target = root / lang / "LC_MESSAGES"
        target.mkdir(parents=True)
        subprocess.run(
            ["msgfmt", "--check", "-o", str(target / "django.mo"), str(po_file(LOCALE, lang))],
            check=True,
            capture_output=True,
        )
    return root


SUBJECT = "Your mailbox copy is finished"
EXPECTED = {
    # language: (subject of the report email, the report's "Duration" for 1 and for 2 minutes)
    "fr": ("Votre copie de boîte mail est terminée", "Durée : 1 minute", "Durée : 2 minutes"),
    "pt": ("A cópia da sua caixa de correio foi concluída", "Duração: 1 minuto", "Duração: 2 minutos"),
    "es": ("La copia de su buzón ha finalizado", "Duración: 1 minuto", "Duración: 2 minutos"),
    "de": ("Die Kopie Ihres Postfachs ist abgeschlossen", "Dauer: 1 Minute", "Dauer: 2 Minuten"),
    "it": ("La copia della sua casella di posta è terminata", "Durata: 1 minuto", "Durata: 2 minuti"),
}


def test_project_catalogs_are_on_the_locale_path():
    assert LOCALE.resolve() in [Path(path).resolve() for path in django_settings.LOCALE_PATHS]


@pytest.mark.parametrize("lang", sorted(EXPECTED))
def test_django_translates_a_known_string(lang, compiled_locale, settings):
    # Changing LOCALE_PATHS through pytest-django's settings fixture also empties Django's
    # translation caches, before and after the test.
    settings.LOCALE_PATHS = [compiled_locale]
    subject, one_minute, two_minutes = EXPECTED[lang]
    with translation.override(lang):
        assert translation.gettext(SUBJECT) == subject
        minutes = ("%(count)s minute", "%(count)s minutes")
        for count, expected in ((1, one_minute), (2, two_minutes)):
            duration = translation.ngettext(*minutes, count) % {"count": count}
            assert translation.gettext("Duration: %(duration)s") % {"duration": duration} == expected


def test_french_report_line_keeps_its_placeholders(compiled_locale, settings):
    settings.LOCALE_PATHS = [compiled_locale]
    with translation.override("fr"):
        line = translation.gettext("Copied: %(messages)s") % {"messages": "5 messages (12,3 ko)"}
    assert line == "Copiés : 5 messages (12,3 ko)"
