"""Small IMAP helpers for tests and benchmarks: a seeded corpus, uploading it, and a verifier
that compares two accounts.  Uses imapclient only (independent of the engine under test)."""

from __future__ import annotations

import base64
import hashlib
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from imapclient import IMAPClient, imap_utf7

Path = tuple[str, ...]


@dataclass(frozen=True)
class Account:
    host: str
    port: int
    login: str
    password: str
    prefix: str = ""
    separator: str = "/"

    def client(self) -> IMAPClient:
        c = IMAPClient(self.host, port=self.port, ssl=False, timeout=60)
        c.login(self.login, self.password)
        return c

    def server_name(self, path: Path) -> str:
        if path == ("INBOX",):
            return "INBOX"
        return self.prefix + self.separator.join(path)

    def path_of(self, name: str) -> Path:
        if name.upper() == "INBOX":
            return ("INBOX",)
        if self.prefix and name.startswith(self.prefix):
            name = name[len(self.prefix) :]
        return tuple(name.split(self.separator))


@dataclass(frozen=True)
class Mail:
    folder: Path
    body: bytes
    flags: tuple[str, ...]
    internaldate: datetime


WORDS = "budget meeting report invoice project deadline review release server backup migration".split()
UNICODE_WORDS = "relatório orçamento reunião Grüße café naïve 日本 メール Привет".split()

DEFAULT_FOLDERS: list[Path] = [
    ("INBOX",),
    ("Sent",),
    ("Drafts",),
    ("Trash",),
    ("Archive",),
    ("Archive", "2020"),
    ("Archive", "2020", "Q1"),
    ("Projects", "Alpha"),
    ("Café", "Réunions"),
    ("日本語",),
    ("Привет",),
    ("Spaß & Co",),
    ("Empty Folder",),  # stays empty
]


def make_message(rng: random.Random, i: int, size: int = 0, special: str = "", attachment: int = 0) -> bytes:
    """One RFC 5322 message; `special` asks for an awkward shape; `attachment` adds that many
    bytes of base64-encoded random data (a multipart message)."""
    date = datetime(2015, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(4_000_000))
    subject = f"{rng.choice(WORDS)} {rng.choice(UNICODE_WORDS) if i % 3 == 0 else rng.choice(WORDS)} #{i}"
    headers = [
        f"From: Sender {i % 7} <s{i % 7}@example.com>",
        "To: Recipient <r@example.org>",
        f"Subject: {subject}" if special != "8bit" else f"Subject: {subject} Grüße",
        f"Date: {date.strftime('%a, %d %b %Y %H:%M:%S +0000')}",
    ]
    if special != "no-message-id":
        headers.append(f"Message-ID: <m{i}.{rng.randrange(10**9)}@example.com>")
    headers.append("MIME-Version: 1.0")
    headers.append("Content-Type: text/plain; charset=utf-8")
    text = " ".join(rng.choice(WORDS) for _ in range(40))
    body_lines = [text[j : j + 70] for j in range(0, len(text), 70)]
    if special == "long-line":
        body_lines.append("x" * 20000)
    total = sum(len(x) + 2 for x in body_lines)
    if size > 1_000_000:  # big: repeat a block rather than drawing millions of words
        block = "\r\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(200))
        count = (size - total) // (len(block) + 2) + 1
        body_lines.extend([block] * count)
        total += count * (len(block) + 2)
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(12))
        body_lines.append(line)
        total += len(line) + 2
    if attachment:
        boundary = f"b{i}x{rng.randrange(10**9)}"
        headers[-1] = f'Content-Type: multipart/mixed; boundary="{boundary}"'
        blob = base64.encodebytes(rng.randbytes(attachment * 3 // 4)).decode().replace("\n", "\r\n")
        text = "\r\n".join(body_lines)
        body_lines = [
            f"--{boundary}", "Content-Type: text/plain; charset=utf-8", "", text,
            f"--{boundary}", "Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64",
            f'Content-Disposition: attachment; filename="file{i}.bin"', "", blob.rstrip(), f"--{boundary}--",
        ]  # fmt: skip
    if special == "bare-lf":
        return ("\r\n".join(headers) + "\r\n\r\n" + "\n".join(body_lines) + "\n").encode()
    raw = "\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(body_lines) + "\r\n"
    return raw.encode("utf-8")


def build_corpus(
    seed: int = 1,
    messages: int = 60,
    folders: list[Path] | None = None,
    sizes: Iterable[int] = (0,),
    attachments: tuple[float, int, int] | None = None,
    duplicate_every: int = 17,
) -> list[Mail]:
    """A reproducible mix: flags, keywords, dates, duplicates and awkward messages.

    attachments=(share, min_bytes, max_bytes): that share of messages carries a random attachment.
    """
    rng = random.Random(seed)
    folders = [f for f in (folders or DEFAULT_FOLDERS) if f != ("Empty Folder",)]
    sizes = list(sizes)
    specials = ["no-message-id", "8bit", "bare-lf", "long-line"]
    mails: list[Mail] = []
    for i in range(messages):
        folder = folders[i % len(folders)]
        special = specials[i // len(folders) % len(specials)] if i < len(folders) * len(specials) * 2 else ""
        attach = 0
        if attachments and rng.random() < attachments[0]:
            attach = rng.randrange(attachments[1], attachments[2])
        body = make_message(rng, i, rng.choice(sizes), special, attach)
        flags = []
        for flag, p in (
            ("\\Seen", 0.6),
            ("\\Flagged", 0.1),
            ("\\Answered", 0.1),
            ("$Label1", 0.1),
            ("$Forwarded", 0.1),
            ("custom_kw", 0.05),
        ):
            if rng.random() < p:
                flags.append(flag)
        date = datetime(2012, 1, 1, tzinfo=timezone(timedelta(hours=rng.choice([-5, 0, 2]))))
        date += timedelta(seconds=rng.randrange(12 * 365 * 86400))
        mails.append(Mail(folder, body, tuple(flags), date))
        if duplicate_every and i % duplicate_every == 5:  # an exact duplicate in the same folder
            mails.append(Mail(folder, body, tuple(flags), date))
    return mails


def upload(account: Account, mails: list[Mail], folders: Iterable[Path] = ()) -> None:
    """CREATE every folder (given or used) and APPEND the mails with flags and INTERNALDATE."""
    with account.client() as c:
        existing = {name for _, _, name in c.list_folders()}
        wanted = list(dict.fromkeys([*folders, *(m.folder for m in mails)]))
        for path in wanted:
            for k in range(1, len(path) + 1):
                name = account.server_name(path[:k])
                if name not in existing and name.upper() != "INBOX":
                    c.create_folder(name)
                    c.subscribe_folder(name)
                    existing.add(name)
        for m in mails:
            c.append(account.server_name(m.folder), m.body, m.flags, m.internaldate)


def upload_fast(account: Account, mails: list[Mail], folders: Iterable[Path] = (), batch: int = 200) -> None:
    """Like upload(), with pipelined MULTIAPPEND + LITERAL+ (for benchmark-sized corpora)."""
    upload(account, [], [*folders, *dict.fromkeys(m.folder for m in mails)])
    with account.client() as c:
        imap = c._imap
        by_folder: dict[Path, list[Mail]] = {}
        for m in mails:
            by_folder.setdefault(m.folder, []).append(m)
        for path, items in by_folder.items():
            name = imap_utf7.encode(account.server_name(path))
            quoted = b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
            for start in range(0, len(items), batch):
                tag = b"U%d" % start
                parts = [tag + b" APPEND " + quoted]
                for m in items[start : start + batch]:
                    date = m.internaldate.strftime("%d-%b-%Y %H:%M:%S %z").encode()
                    flags = " ".join(m.flags).encode()
                    parts.append(b' (%s) "%s" {%d+}\r\n' % (flags, date, len(m.body)))
                    parts.append(m.body)
                parts.append(b"\r\n")
                imap.sock.sendall(b"".join(parts))
                while True:
                    line = imap.file.readline()
                    if not line:
                        raise RuntimeError("connection closed during upload")
                    if line.startswith(tag + b" "):
                        if not line.startswith(tag + b" OK"):
                            raise RuntimeError(line[:200])
                        break


Fingerprint = tuple[str, frozenset[str], int]


def snapshot(account: Account) -> dict[Path, Counter[Fingerprint]]:
    """Per folder: multiset of (sha256 of the bytes, flags minus \\Recent, INTERNALDATE epoch)."""
    out: dict[Path, Counter[Fingerprint]] = {}
    with account.client() as c:
        for flags, _, name in c.list_folders():
            if b"\\Noselect" in flags or b"\\NonExistent" in flags:
                continue
            info = c.select_folder(name, readonly=True)
            counter: Counter[Fingerprint] = Counter()
            uids = c.search("ALL") if info[b"EXISTS"] else []
            data = c.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]) if uids else {}
            for item in data.values():
                flagset = frozenset(f.decode() for f in item[b"FLAGS"] if f != b"\\Recent")
                counter[
                    (hashlib.sha256(item[b"BODY[]"]).hexdigest(), flagset, int(item[b"INTERNALDATE"].timestamp()))
                ] += 1
            out[account.path_of(name)] = counter
    return out


def uid_state(account: Account) -> dict[Path, dict[int, tuple[frozenset, str]]]:
    """Per folder: UID -> (flags incl. \\Seen, sha256); read with EXAMINE + BODY.PEEK only."""
    out = {}
    with account.client() as c:
        for flags, _, name in c.list_folders():
            if b"\\Noselect" in flags:
                continue
            info = c.select_folder(name, readonly=True)
            uids = c.search("ALL") if info[b"EXISTS"] else []
            items = c.fetch(uids, ["FLAGS", "BODY.PEEK[]"]) if uids else {}
            out[account.path_of(name)] = {
                uid: (frozenset(v[b"FLAGS"]) - {b"\\Recent"}, hashlib.sha256(v[b"BODY[]"]).hexdigest())
                for uid, v in items.items()
            }
    return out


def compare(
    source: dict[Path, Counter],
    dest: dict[Path, Counter],
    folder_map: dict[Path, Path] | None = None,
    ignore_dest: Iterable[Path] = (),
) -> list[str]:
    """Differences between two snapshots ([] = identical), after mapping special folders."""
    folder_map = folder_map or {}
    problems = []
    seen = set()
    for path, msgs in source.items():
        target = folder_map.get(path, path)
        seen.add(target)
        if target not in dest:
            problems.append(f"folder {'/'.join(path)} missing on destination (as {'/'.join(target)})")
            continue
        missing = msgs - dest[target]
        extra = dest[target] - msgs
        if missing:
            problems.append(f"{'/'.join(path)}: {sum(missing.values())} missing")
        if extra:
            problems.append(f"{'/'.join(path)}: {sum(extra.values())} extra")
    for path, msgs in dest.items():
        if path not in seen and path not in set(ignore_dest) and sum(msgs.values()):
            problems.append(f"destination folder {'/'.join(path)} has {sum(msgs.values())} unexpected messages")
    return problems
