"""A fake IMAP server that misbehaves on purpose, for the hardening tests (Dovecot will not).

It listens on 127.0.0.1 (a free port), speaks plaintext IMAP well enough to get a client to the
point where it misbehaves (CAPABILITY, LOGIN, LIST, STATUS, SELECT/EXAMINE, UID FETCH, CREATE,
SUBSCRIBE, NOOP, LOGOUT), then does what the scenario says: a greeting that is not IMAP, a
gigantic or endless literal, a line that never ends, 20,000 folders, folder names with `../`,
CR/LF, NUL or broken modified UTF-7, a SELECT that never completes ...

Endless data is streamed from one small chunk sent again and again, so the server itself uses
constant memory however long the client keeps reading; every sending loop stops on `stop()`.

    with HostileImapServer(Scenario.LOGIN_ENDLESS_LITERAL) as server:
        endpoint = Endpoint("127.0.0.1", server.port, Security.NONE, "user", "password")
        ...
    server.bytes_sent, server.commands  # what happened
"""

from __future__ import annotations

import re
import socket
import threading
from enum import StrEnum

LOGIN = "hostile"
PASSWORD = "hostile-Pa55word!"
CHUNK = b"x" * 65536
GIGANTIC = 99_999_999_999  # announced literal size: ~100 GB
INTERNALDATE = b"01-Jan-2024 10:00:00 +0000"


class Scenario(StrEnum):
    # the greeting
    HTTP_GREETING = "http_greeting"  # an HTTP server on the port
    SMTP_GREETING = "smtp_greeting"  # an SMTP server on the port
    SILENT_AFTER_GREETING = "silent_after_greeting"  # greets, then never answers anything
    # the answer to LOGIN
    LOGIN_GIGANTIC_LITERAL = "login_gigantic_literal"  # "* CAPABILITY {99999999999}" then a trickle
    LOGIN_ENDLESS_LITERAL = "login_endless_literal"  # a 2 GB literal streamed as fast as the client reads
    LOGIN_ENDLESS_LINE = "login_endless_line"  # bytes without CRLF, forever
    LOGIN_ENDLESS_UNTAGGED = "login_endless_untagged"  # "* OK ..." lines forever, never the tagged OK
    LOGIN_TRICKLE = "login_trickle"  # an answer trickling a byte every 0.2 s: no read ever times out
    # the folder list
    LIST_20000 = "list_20000"  # 20,000 real-looking folders
    LIST_ENDLESS = "list_endless"  # LIST lines forever
    LIST_TRICKLE = "list_trickle"  # logs in fine, then trickles the LIST answer
    HOSTILE_NAMES = "hostile_names"  # ../, CR/LF, NUL, broken modified UTF-7, a very long name
    # opening a folder, reading a message
    SELECT_NEVER_COMPLETES = "select_never_completes"  # EXAMINE: silence
    SELECT_ENDLESS_UNTAGGED = "select_endless_untagged"  # EXAMINE: "* 1 EXISTS" forever
    FETCH_ENDLESS_LITERAL = "fetch_endless_literal"  # BODY[] {99999999999} then bytes forever
    FETCH_OVERSIZED_LITERAL = "fetch_oversized_literal"  # a 1 KB message whose BODY[] is a 2 GB literal
    # BODY[]: unsolicited FETCH responses, each with a new UID and a 1 KB body, forever
    FETCH_ENDLESS_UNTAGGED = "fetch_endless_untagged"
    WELL_BEHAVED = "well_behaved"  # a small sane mailbox (to check the fixture itself)


# Hostile folder names, exactly as the server sends them (raw bytes) -> how it sends them.
HOSTILE_NAMES = [
    b"../../etc",  # a path escape, if anybody used names as paths
    b"..",
    b"a\r\nX1 DELETE INBOX",  # CR/LF (sent as a literal): would inject a command if sent as is
    b"nul\x00name",  # NUL (sent as a literal, which RFC 3501 forbids)
    b"&Jjo",  # modified UTF-7 never closed
    b"&-&-&",  # "&" misuse
    b"ctl&AAA-&AA0ACg-x",  # valid modified UTF-7 that decodes to NUL, CR, LF
    b"L" + b"o" * 4000 + b"ng",  # a very long name
    b"Plain",  # an ordinary folder next to them
]


def message(number: int, size: int = 600) -> bytes:
    head = (
        f"From: hostile@example.org\r\nTo: victim@example.org\r\nSubject: hostile test {number}\r\n"
        f"Message-ID: <hostile-{number}@example.org>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\n"
    ).encode()
    return head + b"B" * max(0, size - len(head) - 2) + b"\r\n"


def _folders(scenario: Scenario) -> list[bytes]:
    if scenario == Scenario.LIST_20000:
        return [b"INBOX"] + [b"Archive/%05d" % i for i in range(19_999)]
    if scenario == Scenario.HOSTILE_NAMES:
        return [b"INBOX", *HOSTILE_NAMES]
    return [b"INBOX"]


def _wire_name(raw: bytes) -> bytes:
    """A mailbox name as it goes on the wire: quoted when it can be, else a literal."""
    if re.fullmatch(rb"[\x20-\x7e]*", raw) and len(raw) < 1000:
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(raw) + raw


class _Args:
    """A minimal reader of IMAP command arguments: atoms, quoted strings, parenthesized lists."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def next(self) -> bytes | None:
        d = self.data
        while self.pos < len(d) and d[self.pos : self.pos + 1] == b" ":
            self.pos += 1
        if self.pos >= len(d):
            return None
        if d[self.pos : self.pos + 1] == b'"':
            out = bytearray()
            self.pos += 1
            while self.pos < len(d) and d[self.pos : self.pos + 1] != b'"':
                if d[self.pos : self.pos + 1] == b"\\":
                    self.pos += 1
                out += d[self.pos : self.pos + 1]
                self.pos += 1
            self.pos += 1
            return bytes(out)
        end = d.find(b" ", self.pos)
        end = len(d) if end < 0 else end
        token, self.pos = d[self.pos : end], end
        return token

    def rest(self) -> bytes:
        return self.data[self.pos :].strip()


class HostileImapServer:
    """Threaded fake server; a context manager that stops every thread and socket it opened."""

    def __init__(self, scenario: Scenario | str, *, messages_per_folder: int = 1) -> None:
        self.scenario = Scenario(scenario)
        self.messages_per_folder = messages_per_folder
        self.folders = _folders(self.scenario)
        self.commands: list[bytes] = []  # every command line received (first 300 bytes)
        self.bytes_sent = 0
        self.connections = 0
        self.open_connections = 0  # connections not closed yet (by either side)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.host = "127.0.0.1"

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> HostileImapServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        thread = threading.Thread(target=self._accept, name="hostile-imap-accept", daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for thread in list(self._threads):
            thread.join(timeout=5)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"hostile server threads did not stop: {alive}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            with self._lock:
                self._conns.append(conn)
                self.connections += 1
                self.open_connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), name="hostile-imap-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    # ----------------------------------------------------------------- sending
    def _send(self, conn: socket.socket, data: bytes) -> None:
        """sendall that gives up when the server stops (the client may never read again)."""
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                raise ConnectionAbortedError
            try:
                sent = conn.send(view)
            except TimeoutError:
                continue
            view = view[sent:]
            with self._lock:
                self.bytes_sent += sent

    def _stream_forever(self, conn: socket.socket, chunk: bytes = CHUNK) -> None:
        """The same chunk again and again until the client goes away or the server stops."""
        while True:
            self._send(conn, chunk)

    def _stream_unsolicited_fetches(self, conn: socket.socket) -> None:
        """FETCH responses nobody asked for, every one a different message: a client that keeps
        them all runs out of memory."""
        body = b"x" * 1022 + b"\r\n"
        uid = 1_000_000
        while True:
            batch = []
            for _ in range(64):
                uid += 1
                batch.append(
                    b'* %d FETCH (UID %d FLAGS () INTERNALDATE "%s" BODY[] {%d}\r\n%s)\r\n'
                    % (uid, uid, INTERNALDATE, len(body), body)
                )
            self._send(conn, b"".join(batch))

    def _trickle(self, conn: socket.socket) -> None:
        """A byte every 0.2 s, forever: the client's read timeouts never fire."""
        while True:
            self._send(conn, b"x")
            if self._stop.wait(0.2):
                raise ConnectionAbortedError

    def _stall(self, conn: socket.socket) -> None:
        """Say nothing more; notice when the client hangs up (what it sends is dropped)."""
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    break
            except TimeoutError:
                continue
        raise ConnectionAbortedError

    # ----------------------------------------------------------------- receiving
    def _lines(self, conn: socket.socket):
        buffer = b""
        while not self._stop.is_set():
            while b"\r\n" in buffer:
                line, buffer = buffer.split(b"\r\n", 1)
                with self._lock:
                    self.commands.append(line[:300])
                yield line
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            buffer += data
            if len(buffer) > 1_000_000:
                return  # a client flooding a fake server: hang up

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._conversation(conn)
        except (OSError, ConnectionAbortedError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self._lock:
                self.open_connections -= 1

    def _conversation(self, conn: socket.socket) -> None:
        s = self.scenario
        if s == Scenario.HTTP_GREETING:
            self._send(conn, b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n")
            self._stall(conn)
        if s == Scenario.SMTP_GREETING:
            self._send(conn, b"220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n")
            self._stall(conn)
        self._send(conn, b"* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] hostile IMAP server ready\r\n")
        if s == Scenario.SILENT_AFTER_GREETING:
            self._stall(conn)
        for line in self._lines(conn):
            tag, _, rest = line.partition(b" ")
            args = _Args(rest)
            verb = (args.next() or b"").upper()
            if verb == b"UID":
                verb = b"UID " + (args.next() or b"").upper()
            handler = getattr(self, "_cmd_" + verb.decode("ascii", "replace").replace(" ", "_").lower(), None)
            if handler is None:
                self._send(conn, tag + b" BAD unknown command\r\n")
            elif handler(conn, tag, args) == "bye":
                return

    # ----------------------------------------------------------------- commands
    def _cmd_capability(self, conn, tag, args) -> None:
        self._send(conn, b"* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN\r\n" + tag + b" OK done\r\n")

    def _cmd_noop(self, conn, tag, args) -> None:
        self._send(conn, tag + b" OK done\r\n")

    def _cmd_logout(self, conn, tag, args) -> str:
        self._send(conn, b"* BYE bye\r\n" + tag + b" OK done\r\n")
        return "bye"

    def _cmd_login(self, conn, tag, args) -> None:
        s = self.scenario
        if s == Scenario.LOGIN_GIGANTIC_LITERAL:
            self._send(conn, b"* CAPABILITY {%d}\r\nIMAP4rev1 " % GIGANTIC)
            self._trickle(conn)
        if s == Scenario.LOGIN_TRICKLE:
            self._send(conn, b"* OK ")
            self._trickle(conn)
        if s == Scenario.LOGIN_ENDLESS_LITERAL:
            self._send(conn, b"* OK {2000000000}\r\n")
            self._stream_forever(conn)
        if s == Scenario.LOGIN_ENDLESS_LINE:
            self._send(conn, b"* OK ")
            self._stream_forever(conn)
        if s == Scenario.LOGIN_ENDLESS_UNTAGGED:
            self._stream_forever(conn, b"* OK still thinking about your password\r\n" * 1000)
        login, password = args.next(), args.next()
        if (login, password) != (LOGIN.encode(), PASSWORD.encode()):
            self._send(conn, tag + b" NO [AUTHENTICATIONFAILED] wrong login or password\r\n")
            return
        self._send(conn, tag + b" OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] logged in\r\n")

    def _cmd_list(self, conn, tag, args) -> None:
        if self.scenario == Scenario.LIST_TRICKLE:
            self._send(conn, b'* LIST (\\HasNoChildren) "/" "')
            self._trickle(conn)
        if self.scenario == Scenario.LIST_ENDLESS:
            counter = 0
            while True:
                lines = b"".join(b'* LIST (\\HasNoChildren) "/" "Endless/%09d"\r\n' % (counter + i) for i in range(500))
                self._send(conn, lines)
                counter += 500
        out = []
        for raw in self.folders:
            out.append(b'* LIST (\\HasNoChildren) "/" ' + _wire_name(raw) + b"\r\n")
            if len(out) >= 500:
                self._send(conn, b"".join(out))
                out = []
        self._send(conn, b"".join(out) + tag + b" OK LIST done\r\n")

    def _cmd_lsub(self, conn, tag, args) -> None:
        self._send(conn, tag + b" OK LSUB done\r\n")

    def _cmd_status(self, conn, tag, args) -> None:
        name = args.next() or b""
        if name not in self.folders:
            self._send(conn, tag + b" NO [NONEXISTENT] no such folder\r\n")
            return
        n = self.messages_per_folder
        self._send(
            conn,
            b"* STATUS " + _wire_name(name)
            + b" (MESSAGES %d UIDNEXT %d UIDVALIDITY 42)\r\n" % (n, n + 1)
            + tag + b" OK STATUS done\r\n",
        )  # fmt: skip

    def _cmd_examine(self, conn, tag, args) -> None:
        s = self.scenario
        if s == Scenario.SELECT_NEVER_COMPLETES:
            self._stall(conn)
        if s == Scenario.SELECT_ENDLESS_UNTAGGED:
            self._stream_forever(conn, b"* 1 EXISTS\r\n" * 5000)
        name = args.next() or b""
        if name not in self.folders:
            self._send(conn, tag + b" NO [NONEXISTENT] no such folder\r\n")
            return
        self._send(
            conn,
            b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)\r\n* %d EXISTS\r\n* 0 RECENT\r\n"
            b"* OK [UIDVALIDITY 42] UIDs valid\r\n* OK [UIDNEXT %d] next UID\r\n"
            % (self.messages_per_folder, self.messages_per_folder + 1)
            + tag + b" OK [READ-ONLY] EXAMINE done\r\n",
        )  # fmt: skip

    _cmd_select = _cmd_examine

    def _cmd_create(self, conn, tag, args) -> None:
        self._send(conn, tag + b" OK CREATE done\r\n")

    _cmd_subscribe = _cmd_create

    def _cmd_uid_fetch(self, conn, tag, args) -> None:
        args.next()  # the UID set: every message of the folder, whatever was asked
        items = args.rest().upper()
        out = []
        for uid in range(1, self.messages_per_folder + 1):
            body = message(uid)
            if b"BODY.PEEK[]" in items:
                if self.scenario == Scenario.FETCH_ENDLESS_LITERAL:
                    self._send(conn, b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (uid, uid, GIGANTIC))
                    self._stream_forever(conn)
                if self.scenario == Scenario.FETCH_ENDLESS_UNTAGGED:
                    self._stream_unsolicited_fetches(conn)
                if self.scenario == Scenario.FETCH_OVERSIZED_LITERAL:
                    self._send(conn, b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (uid, uid, 2_000_000_000))
                    self._stream_forever(conn)
                literal = b" BODY[] {%d}\r\n" % len(body) + body
            elif b"HEADER.FIELDS" in items:
                header = body.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                literal = b" BODY[HEADER.FIELDS (DATE SUBJECT)] {%d}\r\n" % len(header) + header
            else:
                literal = b""
            out.append(
                b'* %d FETCH (UID %d RFC822.SIZE %d FLAGS (\\Seen) INTERNALDATE "%s"%s)\r\n'
                % (uid, uid, len(body), INTERNALDATE, literal)
            )
        self._send(conn, b"".join(out) + tag + b" OK FETCH done\r\n")
