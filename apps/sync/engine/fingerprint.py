"""Message fingerprints: recognise a message already on the destination without its UID.

What identifies a message must survive the servers it passes through.  RFC822.SIZE does not:
Exchange and Microsoft 365 report estimated sizes, and a server that rewrites a header (Cyrus
replacing 8-bit bytes) changes both the size and the header bytes.  So the *identity* of a
message is its normalised Message-ID and Date (the instant, however the header is spelled);
a message without a Message-ID is identified by its Date, its sender's address and a hash of
the start of its body.  Size, INTERNALDATE and the raw header bytes only break ties between
messages that share an identity (a sent copy and a received copy of one message): they choose
which of them is the one already there, never whether one is.

Compared as a multiset, so that N exact duplicates in a folder are matched by at most N copies.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.header import decode_header, make_header
from email.utils import mktime_tz, parseaddr, parsedate_tz

from .connection import FETCH_INTERNALDATE, FETCH_SIZE, FETCH_START, FETCH_UID, Response, Session, uid_set

FINGERPRINT_HEADERS = b"MESSAGE-ID DATE FROM TO SUBJECT"
FINGERPRINT_FETCH = b"(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (" + FINGERPRINT_HEADERS + b")])"
# Messages without a Message-ID are told apart by the start of their body (a partial FETCH: a
# large attachment is not read to recognise its message).
BODY_SAMPLE_BYTES = 16384
BODY_SAMPLE_FETCH = b"(UID BODY.PEEK[TEXT]<0.%d>)" % BODY_SAMPLE_BYTES
_BODY_SAMPLE_CHARS = 8192  # compared after normalisation, so CRLF/LF spellings cut at the same place
# Above this many pairs in one identity group, match in order instead of by closeness.
_MAX_PAIRS_SCORED = 10_000


@dataclass(frozen=True)
class Fingerprint:
    key: str  # the identity: equal on both sides for the same message, whatever the servers did
    size: int  # the rest only breaks ties between messages sharing an identity
    internaldate: int
    digest: str

    @property
    def needs_body(self) -> bool:
        return self.key.startswith("?")


def internaldate_epoch(value: str) -> int:
    return int(datetime.strptime(value.strip(), "%d-%b-%Y %H:%M:%S %z").timestamp())


def header_digest(header_block: bytes) -> str:
    # Normalise line endings and folding so that a server that re-wraps stored headers still matches.
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", header_block)
    lines = sorted(line.strip().lower() for line in re.split(rb"\r?\n", unfolded) if line.strip())
    return hashlib.sha256(b"\n".join(lines)).hexdigest()[:32]


_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$")
_ANGLE = re.compile(r"<([^<>]*)>")
_SPACE = re.compile(r"\s+")


def header_fields(header_block: bytes) -> dict[str, str]:
    """First occurrence of each field, unfolded, as ASCII text: bytes a server may rewrite (8-bit
    ones, which Cyrus turns into 'X') are left out of what identifies a message."""
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", header_block)
    fields: dict[str, str] = {}
    for line in re.split(rb"\r?\n", unfolded):
        m = _FIELD.match(line)
        if m:
            name = m.group(1).decode("ascii").lower()
            if name not in fields:
                fields[name] = m.group(2).decode("ascii", "ignore").strip()
    return fields


def _message_id(value: str) -> str | None:
    inside = _ANGLE.search(value)
    text = inside.group(1) if inside else value
    text = _SPACE.sub("", text)
    return text or None


def _date(value: str) -> str:
    parsed = parsedate_tz(value) if value else None
    if parsed is not None:
        try:
            return str(mktime_tz(parsed))
        except (OverflowError, ValueError):
            pass
    return _SPACE.sub(" ", value).strip().lower()


def _address(value: str) -> str:
    try:
        value = str(make_header(decode_header(value)))
    except Exception:  # noqa: S110 - a broken encoded-word: the raw text still identifies the sender
        pass
    address = parseaddr(value)[1] or value
    return _SPACE.sub("", address).lower().encode("ascii", "ignore").decode()


def body_sample_digest(body: bytes) -> str:
    text = body.replace(b"\r\n", b"\n").decode("ascii", "ignore")
    lines = [line.rstrip() for line in text.split("\n")]
    normalised = "\n".join(lines).strip("\n")[:_BODY_SAMPLE_CHARS]
    return hashlib.sha256(normalised.encode()).hexdigest()[:32]


def identity(header_block: bytes, body_sample: bytes | None = None) -> str:
    """The identity key of a message.  Without a Message-ID it needs the start of the body: "?"
    followed by the partial key until `body_sample` is given."""
    fields = header_fields(header_block)
    message_id = _message_id(fields.get("message-id", ""))
    date = _date(fields.get("date", ""))
    if message_id is not None:
        material = f"m\0{message_id}\0{date}"
    else:
        partial = f"b\0{date}\0{_address(fields.get('from', ''))}"
        if body_sample is None:
            return "?" + partial
        material = f"{partial}\0{body_sample_digest(body_sample)}"
    return hashlib.sha256(material.encode("utf-8", "replace")).hexdigest()[:32]


def fingerprint(size: int, internaldate: str, header_block: bytes, body_sample: bytes | None = None) -> Fingerprint:
    return Fingerprint(
        identity(header_block, body_sample), size, internaldate_epoch(internaldate), header_digest(header_block)
    )


def with_body(fp: Fingerprint, header_block: bytes, body_sample: bytes) -> Fingerprint:
    return Fingerprint(identity(header_block, body_sample), fp.size, fp.internaldate, fp.digest)


def _closeness(a: Fingerprint, b: Fingerprint) -> tuple[int, int, int]:
    return (a.digest == b.digest, a.internaldate == b.internaldate, -abs(a.size - b.size))


def match_present(
    candidates: Iterable[tuple[int, Fingerprint]], present: Iterable[Fingerprint]
) -> tuple[set[int], list[Fingerprint]]:
    """Source (uid, fingerprint) pairs already on the destination, and the destination
    fingerprints left unmatched.  `present` is consumed as a multiset: N source messages sharing
    an identity are matched by at most N destination copies, and when fewer copies are there,
    the source messages they resemble most (same header bytes, same date, closest size) are the
    ones taken as copied."""
    sources: dict[str, list[tuple[int, Fingerprint]]] = defaultdict(list)
    for uid, fp in candidates:
        sources[fp.key].append((uid, fp))
    copies: dict[str, list[Fingerprint]] = defaultdict(list)
    for fp in present:
        copies[fp.key].append(fp)
    matched: set[int] = set()
    remaining: list[Fingerprint] = []
    for key, there in copies.items():
        wanted = sources.get(key, [])
        if len(there) * len(wanted) > _MAX_PAIRS_SCORED:
            pairs = list(zip(range(len(wanted)), range(len(there)), strict=False))
        else:
            scored = sorted(
                ((i, j) for i in range(len(wanted)) for j in range(len(there))),
                key=lambda ij: _closeness(wanted[ij[0]][1], there[ij[1]]),
                reverse=True,
            )
            pairs, used_src, used_dst = [], set(), set()
            for i, j in scored:
                if i not in used_src and j not in used_dst:
                    used_src.add(i)
                    used_dst.add(j)
                    pairs.append((i, j))
        used = {j for _, j in pairs}
        matched.update(wanted[i][0] for i, _ in pairs)
        remaining.extend(fp for j, fp in enumerate(there) if j not in used)
    return matched, remaining


def set_aside(present: list[Fingerprint], known: Iterable[tuple[int, Fingerprint]]) -> list[Fingerprint]:
    """`present` without the copies of messages known to be on the destination already."""
    _, remaining = match_present(known, present)
    return remaining


def fetch_fingerprints(
    session: Session, uids: list[int] | None, from_uid: int = 1, upto: int | None = None
) -> list[tuple[int, Fingerprint]]:
    """Fingerprints of the given UIDs of the selected folder (None: every message with
    UID >= from_uid, up to `upto`): one FETCH of a few header fields, and a second one of the
    start of the body for the messages that have no Message-ID."""
    if uids == []:
        return []
    if uids is None:
        uidset = b"%d:*" % from_uid if upto is None else b"%d:%d" % (from_uid, upto)
    else:
        uidset = uid_set(uids)
    found: dict[int, tuple[Fingerprint, bytes]] = {}
    tick = session.answer_guard(session.selected_exists)

    def collect(resp: Response) -> None:
        tick()
        if FETCH_START.match(resp.text) and resp.literals:
            text = resp.text
            uid, size, date = FETCH_UID.search(text), FETCH_SIZE.search(text), FETCH_INTERNALDATE.search(text)
            if uid and size and date and int(uid.group(1)) >= from_uid:
                header = resp.literals[0]
                found[int(uid.group(1))] = (fingerprint(int(size.group(1)), date.group(1).decode(), header), header)

    session.check(session.command(b"UID FETCH " + uidset + b" " + FINGERPRINT_FETCH, collect), "FETCH")
    without_id = sorted(uid for uid, (fp, _) in found.items() if fp.needs_body)
    if without_id:
        tick = session.answer_guard(len(without_id))

        def collect_body(resp: Response) -> None:
            tick()
            if FETCH_START.match(resp.text) and resp.literals:
                uid = FETCH_UID.search(resp.text)
                if uid and int(uid.group(1)) in found:
                    fp, header = found[int(uid.group(1))]
                    found[int(uid.group(1))] = (with_body(fp, header, resp.literals[0]), header)

        command = b"UID FETCH " + uid_set(without_id) + b" " + BODY_SAMPLE_FETCH
        session.check(session.command(command, collect_body), "FETCH")
    # A message whose body could not be read keeps its partial key: it matches only its like.
    return sorted((uid, fp) for uid, (fp, _) in found.items())
