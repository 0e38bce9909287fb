"""Folder discovery on both sides and the source -> destination name mapping.

A folder is handled as a path of Unicode parts relative to the personal namespace, so that
`INBOX.Archive.2020` (prefix "INBOX.", separator ".") and `Archive/2020` (no prefix, "/") are the
same path ("Archive", "2020").  Special folders are matched by role (RFC 6154 attribute, else a
well-known localized name) so that "Sent Items" lands in the destination's "Sent".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from imapclient import imap_utf7

from .connection import Response, Session, too_large, unquote
from .errors import EngineError, ErrorCode

# More folders than this fails the copy with too_many_folders (Endpoint.max_folders overrides it):
# the LIST is read one folder at a time and abandoned past the limit, so a server listing folders
# without end costs neither unbounded memory nor unbounded time.  Real mailboxes stay far below.
DEFAULT_MAX_FOLDERS = 10_000

ROLE_ATTRIBUTES = {
    "\\sent": "sent",
    "\\drafts": "drafts",
    "\\trash": "trash",
    "\\junk": "junk",
    "\\archive": "archive",
    "\\all": "all",
    "\\flagged": "flagged",
    "\\important": "important",
}

# Well-known names for servers without SPECIAL-USE (compared case-insensitively).
LOCALIZED_NAMES = {
    "sent": [
        "Sent",
        "Sent Items",
        "Sent Messages",
        "Sent Mail",
        "Sent-Mail",
        "Envoyés",
        "Éléments envoyés",
        "Messages envoyés",
        "Enviados",
        "Itens Enviados",
        "Elementos enviados",
        "Gesendete Elemente",
        "Gesendet",
        "Gesendete Objekte",
        "Posta inviata",
        "Inviati",
        "Verzonden items",
        "Verzonden",
    ],
    "drafts": [
        "Drafts",
        "Draft",
        "Brouillons",
        "Borradores",
        "Rascunhos",
        "Entwürfe",
        "Bozze",
        "Concepten",
    ],
    "trash": [
        "Trash",
        "Deleted Items",
        "Deleted Messages",
        "Bin",
        "Corbeille",
        "Éléments supprimés",
        "Papelera",
        "Elementos eliminados",
        "Lixeira",
        "Lixo",
        "Itens Excluídos",
        "Gelöschte Elemente",
        "Papierkorb",
        "Cestino",
        "Posta eliminata",
        "Verwijderde items",
        "Prullenbak",
    ],
    "junk": [
        "Junk",
        "Spam",
        "Junk E-mail",
        "Junk Email",
        "Junk Mail",
        "Bulk Mail",
        "Courrier indésirable",
        "Indésirables",
        "Correo no deseado",
        "Lixo Eletrônico",
        "Junk-E-Mail",
        "Posta indesiderata",
        "Ongewenste e-mail",
    ],
    "archive": ["Archive", "Archives", "Archiv", "Archivo", "Arquivo", "Archivio", "Archief"],
}
_NAME_TO_ROLE = {name.casefold(): role for role, names in LOCALIZED_NAMES.items() for name in names}
_NAME_RANK = {name.casefold(): rank for names in LOCALIZED_NAMES.values() for rank, name in enumerate(names)}
GMAIL_ROOTS = {"[gmail]", "[google mail]"}
GMAIL_NAMES = {"all mail": "all", "important": "important", "starred": "flagged"}
VIRTUAL_ROLES = {"all", "important", "flagged"}
DEFAULT_NAMES = {"sent": "Sent", "drafts": "Drafts", "trash": "Trash", "junk": "Junk", "archive": "Archive"}


@dataclass
class Folder:
    name: str  # decoded, as the server shows it (prefix and separator included)
    raw: bytes  # exactly what the server sent (modified UTF-7)
    separator: str | None
    attributes: set[str]
    path: tuple[str, ...]  # parts below the personal namespace; ("INBOX",) for the inbox
    role: str | None = None
    # `name` differs from the decoded server name (control characters replaced), or why the
    # folder cannot be copied at all (its raw name cannot be sent back to the server safely).
    sanitized: bool = False
    refused: str | None = None

    @property
    def selectable(self) -> bool:
        return not ({"\\noselect", "\\nonexistent"} & self.attributes)


@dataclass
class Namespace:
    prefix: str = ""
    separator: str | None = "/"


@dataclass
class FolderPlan:
    source: Folder
    dest_name: str
    dest_raw: bytes
    dest_exists: bool
    renamed: bool = False  # dest name differs from the plain translation of the source name
    created: bool = False  # created by this run (so it cannot hold earlier copies)
    # Gmail's All Mail read for its archived messages only (those in no other folder copied).
    archive: bool = False
    keep_flag: Callable[[bytes], bool] = field(default=lambda flag: True, repr=False)


@dataclass
class Listing:
    folders: list[Folder]
    namespace: Namespace
    by_role: dict[str, Folder] = field(default_factory=dict)
    # Folders left out: their names hold NUL, CR, LF or other control bytes, which no IMAP
    # command can carry safely (they would end or split the command line).
    refused: list[Folder] = field(default_factory=list)


def decode_name(raw: bytes) -> str:
    try:
        return imap_utf7.decode(raw)
    except Exception:
        return raw.decode("utf-8", "replace")


def encode_name(name: str) -> bytes:
    return imap_utf7.encode(name)


_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LIST_HEAD = re.compile(rb'^\* LIST \(([^)]*)\) (NIL|"(?:[^"\\]|\\.)*")[ ]?', re.I)
_QUOTED = re.compile(rb'^"((?:[^"\\]|\\.)*)"')


def parse_list(resp: Response) -> tuple[list[str], str | None, bytes] | None:
    """(attributes, separator, raw name) of one LIST response, None for anything else."""
    m = _LIST_HEAD.match(resp.text)
    if not m:
        return None
    attrs = m.group(1).decode("ascii", "replace").split()
    sep = None if m.group(2).upper() == b"NIL" else unquote(m.group(2)).decode("ascii", "replace")
    rest = resp.text[m.end() :]
    if rest.startswith(b"{") and resp.literals:
        return attrs, sep, resp.literals[0]
    q = _QUOTED.match(rest)
    if q:
        return attrs, sep, unquote(q.group(0))
    return attrs, sep, rest.rstrip(b"\r\n").split(b" ", 1)[0]


def _list(session: Session, limit: int) -> list[tuple[list[str], str | None, bytes]]:
    entries: list[tuple[list[str], str | None, bytes]] = []
    others = 0

    def collect(resp: Response) -> None:
        nonlocal others
        parsed = parse_list(resp)
        if parsed is None:
            others += 1
            if others > 10_000:
                raise session.fail(too_large("an answer that never ends", session.side))
            return
        entries.append(parsed)
        if len(entries) > limit:
            raise session.fail(
                EngineError(ErrorCode.TOO_MANY_FOLDERS, f"the server lists more than {limit} folders", session.side)
            )

    with session.time_limit():
        done = session.command(b'LIST "" "*"', collect)
    session.check(done, "LIST")
    return entries


def list_folders(session: Session, max_folders: int | None = None) -> Listing:
    client = session.client
    client.folder_encode = False
    namespace = Namespace()
    if session.has("NAMESPACE"):
        personal = client.namespace().personal
        if personal:
            prefix, sep = personal[0]
            namespace.prefix = decode_name(prefix if isinstance(prefix, bytes) else prefix.encode())
            namespace.separator = sep.decode() if isinstance(sep, bytes) else sep
    # Servers with SPECIAL-USE (Dovecot, Gmail, ...) include the attributes in a plain LIST.
    entries = _list(session, max_folders or session.max_folders or DEFAULT_MAX_FOLDERS)
    folders = []
    refused = []
    for flags, sep_s, raw in entries:
        decoded = decode_name(raw)
        name = _CONTROL_CHARS.sub("_", decoded)
        attrs = {f.lower() for f in flags}
        folder = Folder(name, raw, sep_s, attrs, _path(name, sep_s, namespace), sanitized=name != decoded)
        if _CONTROL_BYTES.search(raw):
            folder.refused = "control_characters"
            refused.append(folder)
            continue
        folders.append(folder)
    if namespace.separator is None and folders:
        namespace.separator = folders[0].separator
    listing = Listing(folders, namespace, refused=refused)
    _assign_roles(listing)
    return listing


def _path(name: str, sep: str | None, namespace: Namespace) -> tuple[str, ...]:
    if name.upper() == "INBOX":
        return ("INBOX",)
    if namespace.prefix and name.startswith(namespace.prefix):
        name = name[len(namespace.prefix) :]
    return tuple(name.split(sep)) if sep else (name,)


def _assign_roles(listing: Listing) -> None:
    """Attribute wins; a localized name only counts at the top level (or under [Gmail])."""
    for folder in listing.folders:
        for attr in folder.attributes:
            role = ROLE_ATTRIBUTES.get(attr)
            if role and role not in listing.by_role:
                folder.role = role
                listing.by_role[role] = folder
    # Several localized candidates (e.g. "Sent Items" and "Envoyés"): the better-known name
    # wins, whatever order the server lists them in.
    candidates = []
    for folder in listing.folders:
        if folder.role or not folder.selectable:
            continue
        role = None
        if len(folder.path) == 1:
            role = _NAME_TO_ROLE.get(folder.path[0].casefold())
            name = folder.path[0]
        elif len(folder.path) == 2 and folder.path[0].casefold() in GMAIL_ROOTS:
            name = folder.path[1]
            role = GMAIL_NAMES.get(name.casefold()) or _NAME_TO_ROLE.get(name.casefold())
        if role:
            candidates.append((_NAME_RANK.get(name.casefold(), 0), folder, role))
    for _, folder, role in sorted(candidates, key=lambda c: c[0]):
        if role not in listing.by_role:
            folder.role = role
            listing.by_role[role] = folder


def is_gmail_virtual(folder: Folder) -> bool:
    return folder.role in VIRTUAL_ROLES


_UNSAFE = re.compile(r"[^\w \-]+")


def safe_part(part: str) -> str:
    """A conservative spelling for a name part that the destination refused."""
    cleaned = _UNSAFE.sub("_", part).strip(" _") or "folder"
    return cleaned[:80]


def dest_name_for(path: tuple[str, ...], dest: Listing) -> tuple[str, bool]:
    """Join path parts the destination's way; -> (name, changed) where changed means a part
    had to be altered because it contains the destination's separator."""
    if path == ("INBOX",):
        return "INBOX", False
    sep = dest.namespace.separator or "/"
    changed = False
    parts = []
    for part in path:
        if sep in part:
            part = part.replace(sep, "_")
            changed = True
        if part in (".", ".."):  # never a name that means "this" or "parent" folder anywhere
            part = "_" * len(part)
            changed = True
        parts.append(part)
    return dest.namespace.prefix + sep.join(parts), changed


def plan_folders(
    source: Listing, dest: Listing, skip_gmail_virtual: bool, keep_all_mail: bool = False
) -> list[FolderPlan]:
    """Map every selectable source folder to its destination name (Gmail's virtual folders left
    out if asked, All Mail kept as a folder of its own if asked)."""
    role_paths = {}  # source path prefix -> destination path prefix, for special folders
    for role, sfolder in source.by_role.items():
        if role in VIRTUAL_ROLES:
            continue
        dfolder = dest.by_role.get(role)
        if dfolder is not None:
            role_paths[sfolder.path] = dfolder.path
    existing = {f.name: f for f in dest.folders}
    existing_upper = {f.name.upper(): f for f in dest.folders}
    plans = []
    for folder in source.folders:
        if not folder.selectable:
            continue
        if skip_gmail_virtual and is_gmail_virtual(folder) and not (keep_all_mail and folder.role == "all"):
            continue
        path = folder.path
        for k in range(len(path), 0, -1):
            if path[:k] in role_paths:
                path = role_paths[path[:k]] + path[k:]
                break
        name, changed = dest_name_for(path, dest)
        found = existing.get(name) or (existing_upper.get(name.upper()) if name.upper() == "INBOX" else None)
        plans.append(
            FolderPlan(
                source=folder,
                dest_name=found.name if found else name,
                dest_raw=found.raw if found else encode_name(name),
                dest_exists=found is not None and found.selectable,
                renamed=changed,
            )
        )
    return plans


def plan_archive(source: Listing, dest: Listing) -> FolderPlan | None:
    """Where the archived messages of the source's All Mail go: the destination's \\Archive
    folder, else a folder named Archive (created if missing).  None without an All Mail."""
    all_mail = source.by_role.get("all")
    if all_mail is None or not all_mail.selectable:
        return None
    target = dest.by_role.get("archive")
    if target is not None:
        return FolderPlan(all_mail, target.name, target.raw, target.selectable, archive=True)
    name, _ = dest_name_for((DEFAULT_NAMES["archive"],), dest)
    found = next((f for f in dest.folders if f.name == name), None)
    return FolderPlan(
        all_mail, name, found.raw if found else encode_name(name), found is not None and found.selectable, archive=True
    )
