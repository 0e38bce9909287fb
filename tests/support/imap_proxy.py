"""An IMAP-aware proxy that makes a test Dovecot behave like another provider.

`ImapProxy` listens on 127.0.0.1:<port> and opens one plaintext connection to the Dovecot per
client connection.  Unlike tests/support/proxy.py it parses IMAP framing both ways (CRLF lines,
`{n}` / `{n+}` / `~{n}` literals), so it can rewrite, refuse and count whole commands:

    with DovecotServer(Profile.exchange_like()) as server, ImapProxy(
        server.port, Quirks(size_shift=-3, no_keywords=True, refuse_unadvertised=True)
    ) as proxy:
        ...  # point the client at proxy.host / proxy.port
        assert proxy.refused == [] and proxy.commands["MULTIAPPEND"] == 0

How commands travel: the proxy reads a client command completely before forwarding it (it answers
"+ OK" to the client's synchronizing literals itself), so that it can refuse a MULTIAPPEND seen at
its second message or resize a rewritten message.  Upstream, every literal is synchronizing and
the server's "+" is swallowed.  So a server's early refusal (APPEND to a missing folder, TOOBIG)
reaches the client after it sent the literal, not instead of the "+".  Plaintext only: STARTTLS
and COMPRESS are neither advertised nor passed on.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

LITERAL_MINUS_MAX = 4096  # RFC 7888: LITERAL- allows {n+} only up to this many bytes
_LITERAL = re.compile(rb"(~?)\{(\d+)(\+?)\}\r?\n$")
_QUOTED = rb'"(?:[^"\\\r\n]|\\.)*"'
_WORD = re.compile(rb"[^\s()]+")

# Commands beyond RFC 3501 -> the capability they need ("X=": any "X=..."; "A|B": either).
_COMMAND_NEEDS = {
    "UNSELECT": "UNSELECT", "NAMESPACE": "NAMESPACE", "ENABLE": "ENABLE", "ID": "ID", "IDLE": "IDLE",
    "MOVE": "MOVE", "UID MOVE": "MOVE", "UID EXPUNGE": "UIDPLUS", "GETQUOTA": "QUOTA", "GETQUOTAROOT": "QUOTA",
    "SETQUOTA": "QUOTA", "SORT": "SORT", "UID SORT": "SORT", "THREAD": "THREAD=", "UID THREAD": "THREAD=",
    "GETMETADATA": "METADATA|METADATA-SERVER", "SETMETADATA": "METADATA|METADATA-SERVER", "NOTIFY": "NOTIFY",
    "REPLACE": "REPLACE", "UID REPLACE": "REPLACE", "XLIST": "XLIST", "MYRIGHTS": "ACL", "GETACL": "ACL",
    "SETACL": "ACL", "DELETEACL": "ACL", "LISTRIGHTS": "ACL",
}  # fmt: skip
# Words in a command (quoted strings and [sections] removed) -> the capability they need.
# X-GUID is Dovecot's own: no provider has it, so it is never advertised.
_WORD_NEEDS = {
    "FETCH": {"EMAILID": "OBJECTID", "THREADID": "OBJECTID", "MODSEQ": "CONDSTORE", "CHANGEDSINCE": "CONDSTORE",
              "VANISHED": "QRESYNC", "BINARY": "BINARY", "BINARY.PEEK": "BINARY", "BINARY.SIZE": "BINARY",
              "PREVIEW": "PREVIEW", "SNIPPET": "SNIPPET=FUZZY", "SAVEDATE": "SAVEDATE", "X-GUID": "X-GUID",
              "X-GM-MSGID": "X-GM-EXT-1", "X-GM-THRID": "X-GM-EXT-1", "X-GM-LABELS": "X-GM-EXT-1"},
    "SEARCH": {"RETURN": "ESEARCH", "MODSEQ": "CONDSTORE", "OLDER": "WITHIN", "YOUNGER": "WITHIN",
               "FUZZY": "SEARCH=FUZZY", "EMAILID": "OBJECTID", "THREADID": "OBJECTID", "X-GUID": "X-GUID",
               "X-GM-RAW": "X-GM-EXT-1", "X-GM-MSGID": "X-GM-EXT-1", "X-GM-THRID": "X-GM-EXT-1",
               "X-GM-LABELS": "X-GM-EXT-1"},
    "STATUS": {"SIZE": "STATUS=SIZE", "HIGHESTMODSEQ": "CONDSTORE", "APPENDLIMIT": "APPENDLIMIT",
               "MAILBOXID": "OBJECTID", "DELETED": "IMAP4REV2"},
    "SELECT": {"CONDSTORE": "CONDSTORE", "QRESYNC": "QRESYNC"},
    "STORE": {"UNCHANGEDSINCE": "CONDSTORE", "X-GM-LABELS": "X-GM-EXT-1"},
    "APPEND": {"UTF8": "UTF8=ACCEPT", "CATENATE": "CATENATE"},
}  # fmt: skip
# LIST RETURN options -> capability (RETURN (STATUS ...) / (SPECIAL-USE) alone pass with LIST-STATUS /
# SPECIAL-USE: both RFCs make such servers accept that much of the extended syntax).
_LIST_RETURN = {"STATUS": "LIST-STATUS", "SPECIAL-USE": "SPECIAL-USE", "CHILDREN": "LIST-EXTENDED",
                "SUBSCRIBED": "LIST-EXTENDED", "MYRIGHTS": "LIST-EXTENDED"}  # fmt: skip
_WORD_NEEDS["EXAMINE"] = _WORD_NEEDS["SELECT"]
_NOT_EMULATED = {"X-GM-THRID", "X-GM-LABELS", "X-GM-RAW", "THREADID", "MAILBOXID"}  # always refused


@dataclass(frozen=True)
class Quirks:
    """How the proxied server differs from the Dovecot behind it (everything off by default)."""

    capabilities: str | None = None  # replaces every CAPABILITY list (the server's AUTH= atoms kept)
    size_shift: int = 0  # added to RFC822.SIZE in FETCH responses (Exchange reports estimates)
    no_keywords: bool = False  # Exchange: keywords are neither stored nor shown, no \* in PERMANENTFLAGS
    refuse_unadvertised: bool = False  # "<tag> BAD" for what the client was not told the server can do
    objectid: bool = False  # RFC 8474 EMAILID emulated with X-GUID (advertises OBJECTID); THREADID refused
    gmail: bool = False  # X-GM-EXT-1: X-GM-MSGID emulated with X-GUID; X-GM-LABELS/THRID/RAW refused
    rewrite_message: Callable[[bytes], bytes] | None = None  # applied to every APPENDed message
    ignore_append_date: bool = False  # the date given in APPEND is dropped: the server stores arrival time


def emailid(guid: bytes) -> bytes:
    """The EMAILID the proxy shows for a Dovecot X-GUID (RFC 8474 objectid: [A-Za-z0-9_-]{1,255})."""
    return b"M" + hashlib.sha256(guid).hexdigest()[:24].encode()


def gm_msgid(guid: bytes) -> int:
    """The X-GM-MSGID the proxy shows for a Dovecot X-GUID (63 bits: safe for signed parsers too)."""
    return int.from_bytes(hashlib.sha256(guid).digest()[:8], "big") >> 1


@functools.cache
def _outside_quotes(pattern: bytes) -> re.Pattern:
    return re.compile(rb"(?P<q>" + _QUOTED + rb")|" + pattern, re.I)


def _sub(pattern: bytes, repl: Callable[[re.Match], bytes], data: bytes) -> bytes:
    """re.sub, case-insensitive, that leaves quoted strings alone (a Subject may contain anything)."""
    return _outside_quotes(pattern).sub(lambda m: m.group(0) if m.group("q") else repl(m), data)


def _system_flags_only(flags: bytes, drop_star: bool = False) -> bytes:
    return b" ".join(f for f in flags.split() if f.startswith(b"\\") and not (drop_star and f == b"\\*"))


@dataclass
class _Part:
    text: bytes  # a line of a command up to its literal's {n}
    literal: bytes | None = None  # None on the command's last line
    binary: bool = False  # ~{n}


class Connection:
    """One client connection and its upstream connection; two threads, one per direction."""

    def __init__(self, proxy: ImapProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy, self.quirks = proxy, proxy.quirks
        self.client, self.upstream = client, upstream
        self.cin, self.sin = client.makefile("rb"), upstream.makefile("rb")
        self.commands: Counter[str] = Counter()
        self.caps: set[str] = set()  # the capability list the client was last shown
        self.guid_names: set[bytes] = set()  # how the client asked for X-GUID: EMAILID, X-GM-MSGID, X-GUID
        self._client_lock = threading.Lock()  # one writer at a time to the client, whole responses
        self._cv = threading.Condition()
        self._waiting_tag: bytes | None = None  # our literal header sent upstream, awaiting its "+"
        self._continuation: str | None = None  # "go", "rejected" (tagged answer instead) or "closed"
        for target in (self._client_to_server, self._server_to_client):
            threading.Thread(target=target, daemon=True).start()

    def close(self) -> None:
        """Shut both sockets down: each thread sees EOF or an error, ends, closes its side."""
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        with self._cv:
            self._continuation = self._continuation or "closed"
            self._cv.notify_all()

    def _to_client(self, data: bytes) -> None:
        with self._client_lock:
            self.client.sendall(data)

    def _has(self, *caps: str) -> bool:
        return any(c in self.caps or (c.endswith("=") and any(x.startswith(c) for x in self.caps)) for c in caps)

    # ------------------------------------------------------------------ client -> server
    def _client_to_server(self) -> None:
        try:
            while line := self.cin.readline():
                words = line.split(None, 3)
                if len(words) < 2:  # IDLE's DONE, an AUTHENTICATE response: not a command
                    self.upstream.sendall(line)
                    continue
                name = words[1].upper().decode(errors="replace")
                if name == "UID" and len(words) > 2:
                    name += " " + words[2].upper().decode(errors="replace")
                self._command(words[0], name, line)
        except OSError:
            pass
        finally:
            self.close()
            self.cin.close()  # each thread closes what it reads from, once it no longer reads
            self.client.close()

    def _command(self, tag: bytes, name: str, line: bytes) -> None:
        self._count(name)  # refused ones too: "the client never sent X" is what tests assert
        parts: list[_Part] = []
        messages = 0  # APPEND: message literals so far (the mailbox name may be a literal too)
        while m := _LITERAL.search(line):
            size, plus, binary = int(m[2]), m[3] == b"+", m[1] == b"~"
            part = _Part(line[: m.start()], binary=binary)
            parts.append(part)
            mailbox = name == "APPEND" and len(parts) == 1 and not part.text.split()[2:]
            messages += name == "APPEND" and not mailbox
            self._count(*(["LITERAL+"] if plus else []), *(["MULTIAPPEND"] if messages == 2 else []))
            why = self._refusal_at_literal(size, plus, binary, messages)
            if why == "BYE":  # what Dovecot with imap_literal_minus does
                self._refuse(tag, parts, "{n+} > 4096 under LITERAL-", answer=False)
                self._to_client(b"* BYE [TOOBIG] Non-synchronizing literal size too large\r\n")
                self.client.shutdown(socket.SHUT_WR)  # let the client read the BYE: no reset while it
                self.client.settimeout(2)  # is still sending, drain what it sends for a moment
                while self.cin.read1(65536):
                    pass
                return
            if why:
                self._refuse(tag, parts, why)
                if plus:  # the client sends the rest without waiting: read it and drop it
                    self._skip(size)
                return
            if not plus:
                self._to_client(b"+ OK\r\n")
            part.literal = self._read_exact(size)
            line = self.cin.readline()
        parts.append(_Part(line.rstrip(b"\r\n")))
        why = self._refusal_of_command(name, parts)
        if why:
            self._refuse(tag, parts, why)
            return
        self._rewrite_command(name, parts)
        self._send_upstream(tag, parts)

    def _count(self, *names: str) -> None:
        with self.proxy.lock:
            self.commands.update(names)
            self.proxy.commands.update(names)

    def _refusal_at_literal(self, size: int, plus: bool, binary: bool, messages: int) -> str | None:
        if not self.quirks.refuse_unadvertised:
            return None
        if plus and not self._has("LITERAL+"):
            if not self._has("LITERAL-"):
                return "{n+} without LITERAL+"
            if size > LITERAL_MINUS_MAX:
                return "BYE"
        if binary and not self._has("BINARY"):
            return "~{n} without BINARY"
        if messages > 1 and not self._has("MULTIAPPEND"):
            return "MULTIAPPEND"
        return None

    def _refusal_of_command(self, name: str, parts: list[_Part]) -> str | None:
        # Words of the command outside quoted strings, literals and [sections]: what it asks for.
        text = b" ".join(p.text + (b' ""' if p.literal is not None else b"") for p in parts)
        bare = re.sub(rb"\[[^\]]*\]", b"[]", re.sub(_QUOTED, b'""', text))
        words = {w.split(b"[")[0].upper().decode(errors="replace") for w in _WORD.findall(bare)[2:]}
        base = name.removeprefix("UID ")
        if base in ("FETCH", "SEARCH", "STORE", "STATUS") and words & _NOT_EMULATED:  # Dovecot lacks them
            return f"{', '.join(sorted(words & _NOT_EMULATED))} not emulated"
        if name in ("STARTTLS", "COMPRESS"):  # whatever the quirks: the proxy reads plain IMAP only
            return name
        if not self.quirks.refuse_unadvertised:
            return None
        if name in _COMMAND_NEEDS and not self._has(*_COMMAND_NEEDS[name].split("|")):
            return name
        if name == "AUTHENTICATE" and len(bare.split()) > 2:
            mechanism = bare.split()[2].upper().decode(errors="replace")
            if not self._has("AUTH=" + mechanism) or (len(bare.split()) > 3 and not self._has("SASL-IR")):
                return f"AUTHENTICATE {mechanism}"
        if base in ("STATUS", "SELECT", "EXAMINE"):  # only the (...) list: a folder may be called SIZE
            words = {w.upper().decode(errors="replace") for w in _WORD.findall(bare.partition(b"(")[2])}
        needs = {cap for word, cap in _WORD_NEEDS.get(base, {}).items() if word in words}
        if name == "LIST":
            head, _, returned = bare.upper().partition(b" RETURN ")
            selection = re.match(rb"\S+\s+LIST\s+\(([^)]*)\)", head)
            if selection or re.match(rb"\S+\s+LIST\s+\S+\s+\(", head):  # selection options, several patterns
                needs.add("LIST-EXTENDED")
            options = _WORD.findall((selection[1] if selection else b"") + b" " + returned)
            needs.update(_LIST_RETURN[w.decode()] for w in options if w.decode() in _LIST_RETURN)
        missing = sorted(cap for cap in needs if not self._has(cap))
        return f"{base} needs {' '.join(missing)}" if missing else None

    def _refuse(self, tag: bytes, parts: list[_Part], why: str, answer: bool = True) -> None:
        with self.proxy.lock:
            self.proxy.refused.append(parts[0].text[:300].rstrip())
            self.proxy.reasons.append(why)
        if answer:
            self._to_client(tag + b" BAD Unknown command (%s not advertised)\r\n" % why.encode())

    def _skip(self, size: int) -> None:
        """Drop the rest of a refused command whose literals come without waiting for "+"."""
        self._read_exact(size)
        while (m := _LITERAL.search(self.cin.readline())) and m[3] == b"+":
            self._read_exact(int(m[2]))

    def _read_exact(self, size: int) -> bytes:
        data = self.cin.read(size)
        if len(data) != size:
            raise OSError("client closed inside a literal")
        return data

    def _rewrite_command(self, name: str, parts: list[_Part]) -> None:
        q, base = self.quirks, name.removeprefix("UID ")
        if base == "FETCH" and (q.objectid or q.gmail):
            # Ask Dovecot for X-GUID once, remember which name(s) the client wants it under.
            asked = {m[1].upper() for p in parts for m in re.finditer(rb"(?i)\b(EMAILID|X-GM-MSGID|X-GUID)\b", p.text)}
            self.guid_names |= asked
            first = [True]

            def item(m: re.Match) -> bytes:
                keep, first[0] = first[0], False
                return m["sp"] + b"X-GUID" if keep else m["sp"].strip()  # drop a repeat, keep its "("

            for p in parts:
                p.text = _sub(rb"(?P<sp>[ (]?)(?<![\w.-])(?:EMAILID|X-GM-MSGID|X-GUID)(?![\w.-])", item, p.text)
        if q.no_keywords and base == "APPEND":
            for p in parts:
                p.text = _sub(rb"\((?P<f>[^()]*)\)", lambda m: b"(" + _system_flags_only(m["f"]) + b")", p.text)
        if q.no_keywords and base == "STORE":
            for p in parts:
                p.text = _sub(
                    rb"(?P<item>[+-]?FLAGS(?:\.SILENT)?\s+)(?P<f>.*)$",
                    lambda m: m["item"] + b"(" + _system_flags_only(m["f"].strip(b"()")) + b")",
                    p.text,
                )
        if q.ignore_append_date and base == "APPEND":
            for p in parts:
                p.text = re.sub(rb' "\d{1,2}-[A-Za-z]{3}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"', b"", p.text)
        if q.rewrite_message and base == "APPEND":
            mailbox_literal = not parts[0].text.split()[2:]
            for i, p in enumerate(parts):
                if p.literal is not None and not (i == 0 and mailbox_literal):
                    p.literal = q.rewrite_message(p.literal)

    def _send_upstream(self, tag: bytes, parts: list[_Part]) -> None:
        for p in parts[:-1]:
            # Synchronizing upstream, whatever the client used: fine with any Dovecot setting.
            with self._cv:
                self._waiting_tag, self._continuation = tag, None
            self.upstream.sendall(p.text + b"%s{%d}\r\n" % (b"~" if p.binary else b"", len(p.literal)))
            with self._cv:
                while self._continuation is None:
                    self._cv.wait()
                outcome, self._waiting_tag = self._continuation, None
            if outcome != "go":  # the server answered the command already (NO/BAD): drop the rest
                return
            self.upstream.sendall(p.literal)
        self.upstream.sendall(parts[-1].text + b"\r\n")

    # ------------------------------------------------------------------ server -> client
    def _server_to_client(self) -> None:
        try:
            while line := self.sin.readline():
                if line.startswith(b"+"):
                    with self._cv:
                        if self._waiting_tag is not None and self._continuation is None:
                            self._continuation = "go"  # our literal's "+": the client had its own
                            self._cv.notify_all()
                            continue
                    self._to_client(line)
                    continue
                with self._cv:
                    if self._waiting_tag is not None and line.split(b" ", 1)[0] == self._waiting_tag:
                        self._continuation = "rejected"
                        self._cv.notify_all()
                fetch = re.match(rb"\* \d+ FETCH ", line) is not None
                with self._client_lock:  # a response with its literals goes out in one piece
                    while True:
                        m = re.search(rb"~?\{(\d+)\}\r\n$", line)
                        end = m.start() if m else len(line)
                        self.client.sendall(self._rewrite_response(line[:end], fetch) + line[end:])
                        if not m:
                            break
                        remaining = int(m[1])
                        while remaining:
                            chunk = self.sin.read(min(remaining, 65536))
                            if not chunk:
                                raise OSError("server closed inside a literal")
                            self.client.sendall(chunk)
                            remaining -= len(chunk)
                        line = self.sin.readline()
        except OSError:
            pass
        finally:
            self.close()
            self.sin.close()
            self.upstream.close()

    def _rewrite_response(self, text: bytes, fetch: bool) -> bytes:
        q = self.quirks
        text = re.sub(rb"(?i)^(\* CAPABILITY )([^\r\n]*)", lambda m: m[1] + self._capabilities(m[2]), text)
        text = re.sub(rb"(?i)(\[CAPABILITY )([^\]]*)", lambda m: m[1] + self._capabilities(m[2]), text)
        if q.no_keywords:  # \* would tell the client it may create keywords
            drop = lambda m: m[1] + _system_flags_only(m[2], drop_star=True)  # noqa: E731
            text = re.sub(rb"(?i)(\[PERMANENTFLAGS \(|^\* FLAGS \()([^)]*)", drop, text)
        if not fetch:
            return text
        if q.size_shift:
            shift = lambda m: b"RFC822.SIZE %d" % max(0, int(m["n"]) + q.size_shift)  # noqa: E731
            text = _sub(rb"RFC822\.SIZE (?P<n>\d+)", shift, text)
        if q.no_keywords:
            text = _sub(rb"\bFLAGS \((?P<f>[^()]*)\)", lambda m: b"FLAGS (" + _system_flags_only(m["f"]) + b")", text)
        if (q.objectid or q.gmail) and self.guid_names:
            text = _sub(rb'X-GUID (?P<g>"[^"]*"|[^\s()]+)', self._guid_items, text)
        return text

    def _guid_items(self, m: re.Match) -> bytes:
        guid, names = m["g"].strip(b'"'), self.guid_names
        items = [m[0]] if b"X-GUID" in names else []
        items += [b"EMAILID (%s)" % emailid(guid)] if b"EMAILID" in names else []
        return b" ".join(items + ([b"X-GM-MSGID %d" % gm_msgid(guid)] if b"X-GM-MSGID" in names else []))

    def _capabilities(self, listed: bytes) -> bytes:
        atoms = [a for a in listed.split() if a.upper() != b"STARTTLS"]  # TLS cannot pass the proxy
        if self.quirks.capabilities is not None:
            login = [a for a in atoms if a.upper().startswith(b"AUTH=") or a.upper() == b"LOGINDISABLED"]
            atoms = self.quirks.capabilities.encode().split() + login
        for flag, atom in ((self.quirks.objectid, b"OBJECTID"), (self.quirks.gmail, b"X-GM-EXT-1")):
            if flag and atom not in atoms:
                atoms.append(atom)
        self.caps = {a.upper().decode() for a in atoms}
        return b" ".join(atoms)


class ImapProxy:
    """127.0.0.1:<port> -> an IMAP server (plaintext) at target_host:target_port, with quirks."""

    def __init__(self, target_port: int, quirks: Quirks | None = None, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.quirks = quirks or Quirks()
        self.host = "127.0.0.1"
        self.lock = threading.Lock()
        self.commands: Counter[str] = Counter()  # by name ("UID FETCH"), plus "MULTIAPPEND" and "LITERAL+"
        self.refused: list[bytes] = []  # first line of every command refused (without its literals)
        self.reasons: list[str] = []  # why, in the same order
        self.connections: list[Connection] = []
        self._listener = socket.create_server((self.host, 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> ImapProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._listener.close()
        for connection in list(self.connections):
            connection.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:  # the server is gone: so is this client
                client.close()
                continue
            with self.lock:
                self.connections.append(Connection(self, client, upstream))
