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

from .connection import Session

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
    keep_flag: Callable[[bytes], bool] = field(default=lambda flag: True, repr=False)


@dataclass
class Listing:
    folders: list[Folder]
    namespace: Namespace
    by_role: dict[str, Folder] = field(default_factory=dict)


def decode_name(raw: bytes) -> str:
    try:
        return imap_utf7.decode(raw)
    except Exception:
        return raw.decode("utf-8", "replace")


def encode_name(name: str) -> bytes:
    return imap_utf7.encode(name)


def list_folders(session: Session) -> Listing:
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
    entries = client.list_folders()
    folders = []
    for flags, sep, raw in entries:
        raw = raw if isinstance(raw, bytes) else str(raw).encode()
        sep_s = sep.decode() if isinstance(sep, bytes) else sep
        name = decode_name(raw)
        attrs = {f.decode().lower() if isinstance(f, bytes) else f.lower() for f in flags}
        folders.append(Folder(name, raw, sep_s, attrs, _path(name, sep_s, namespace)))
    if namespace.separator is None and folders:
        namespace.separator = folders[0].separator
    listing = Listing(folders, namespace)
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
        parts.append(part)
    return dest.namespace.prefix + sep.join(parts), changed


def plan_folders(source: Listing, dest: Listing, skip_gmail_virtual: bool) -> list[FolderPlan]:
    """Map every selectable source folder to its destination name."""
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
        if skip_gmail_virtual and is_gmail_virtual(folder):
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
