"""A tiny TCP proxy between a client and a server, to simulate network faults.

It forwards 127.0.0.1:<port> to the target and can, at a chosen point, drop every connection
(reset), stall (stop forwarding without closing anything, like a server or a link that stopped
answering) or trickle (forward at a few bytes per second). The point is either "now", "after N
more bytes" or "when the client sends something matching a pattern (e.g. APPEND), then after N
more bytes", so a fault can land in the middle of a given command. Patterns only make sense on
plaintext connections; byte counts work through TLS too.

    with TcpProxy("127.0.0.1", server.port) as proxy:
        proxy.arm(Fault("drop", upstream=rb"APPEND", after_bytes=100_000))
        ...
        assert proxy.acted.is_set()
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

ACTIONS = ("drop", "stall", "trickle")


@dataclass(frozen=True)
class Fault:
    action: str  # "drop", "stall" or "trickle"
    after_bytes: int = 0  # bytes (both directions, all connections) to let through after the trigger
    upstream: bytes | None = None  # regex on client -> server data that triggers it; None: armed at once
    rate: int = 20_000  # trickle: bytes per second, for each direction of each connection
    seconds: float | None = None  # stall / trickle: heal on its own after this long (None: until heal())

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")


class TcpProxy:
    """Forwards 127.0.0.1:<port> to target; drop_connections() resets all open connections.

    drop_after_bytes: once that many bytes went through (both directions, all connections),
    drop everything, once (shorthand for arm(Fault("drop", after_bytes=n))).
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        drop_after_bytes: int | None = None,
        rewrite_down: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self.rewrite_down = rewrite_down  # applied to each chunk going server -> client
        self.bytes_total = 0
        self.drops = 0
        self.connections = 0
        self.mode = "normal"  # "normal", "stall" or "trickle"
        self.triggered = threading.Event()  # the fault's trigger was seen
        self.acted = threading.Event()  # the fault's action began
        self.healed = threading.Event()  # a stall or trickle ended
        self.acted_at: float | None = None  # time.monotonic() of the action
        self.trigger_chunk = b""  # the client data in which the fault's pattern was seen
        self.healed_at: float | None = None
        self._fault: Fault | None = None
        self._countdown: int | None = None  # bytes still to let through before acting
        self._rate = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        if drop_after_bytes is not None:
            self.arm(Fault("drop", after_bytes=drop_after_bytes))

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        self._listener.close()
        self.drop_connections(count=False)

    # ------------------------------------------------------------------ faults
    def arm(self, fault: Fault) -> None:
        """Set the fault to inject next (one at a time; it fires once)."""
        with self._lock:
            self._fault = fault
            self.triggered.clear()
            self.acted.clear()
            self.healed.clear()
            self._countdown = None
            if fault.upstream is None:
                self._trigger_locked()
            at_once = fault.upstream is None and fault.after_bytes == 0
        if at_once:
            self._act()

    def stall(self) -> None:
        """Stop forwarding now (connections stay open); heal() resumes."""
        self.arm(Fault("stall"))

    def trickle(self, rate: int) -> None:
        self.arm(Fault("trickle", rate=rate))

    def heal(self) -> None:
        """End a stall or a trickle: forward at full speed again, held data included."""
        with self._lock:
            if self.mode == "normal":
                return
            self.mode = "normal"
            self.healed_at = time.monotonic()
            self._flowing.set()
        self.healed.set()

    def drop_connections(self, count: bool = True) -> None:
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
            if count:
                self.drops += 1
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _trigger_locked(self) -> None:
        self.triggered.set()
        self._countdown = self._fault.after_bytes if self._fault else None

    def _act(self) -> None:
        """Start the armed fault's action (called without the lock held)."""
        with self._lock:
            fault, self._fault, self._countdown = self._fault, None, None
            if fault is None:
                return
            self.acted_at = time.monotonic()
            if fault.action == "stall":
                self.mode = "stall"
                self._flowing.clear()
            elif fault.action == "trickle":
                self.mode, self._rate = "trickle", fault.rate
        self.acted.set()
        if fault.action == "drop":
            self.drop_connections()
        elif fault.seconds is not None:
            timer = threading.Timer(fault.seconds, self.heal)
            timer.daemon = True
            timer.start()

    # ------------------------------------------------------------------ forwarding
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, None, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.rewrite_down, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rewrite: Callable[[bytes], bytes] | None, up: bool) -> None:
        tail = b""  # end of the previous chunk, so a pattern cut in two is still seen
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if rewrite:
                    data = rewrite(data)
                if up:
                    with self._lock:
                        fault = self._fault
                        if fault is not None and fault.upstream is not None and not self.triggered.is_set():
                            if re.search(fault.upstream, tail + data):
                                self.trigger_chunk = tail + data
                                self._trigger_locked()
                    tail = data[-64:]
                while data:
                    act = False
                    with self._lock:
                        n = len(data)
                        if self._countdown is not None and self._countdown < n:
                            n, act = self._countdown, True
                        elif self._countdown is not None:
                            self._countdown -= n
                            act = self._countdown == 0 and self._fault is not None
                        if act:
                            self._countdown = 0
                    chunk, data = data[:n], data[n:]
                    if chunk:
                        self._send(dst, chunk)
                        with self._lock:
                            self.bytes_total += len(chunk)
                    if act:
                        self._act()
                        with self._lock:
                            dropped = dst not in self._sockets
                        if dropped:
                            return
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _send(self, dst: socket.socket, data: bytes) -> None:
        while data:
            while self.mode == "stall" and not self._closed:
                self._flowing.wait(0.1)  # hold the data and read nothing more: the peer waits
            if self.mode == "trickle":
                step = max(1, self._rate // 10)
                dst.sendall(data[:step])
                data = data[step:]
                time.sleep(step / self._rate)
            else:
                dst.sendall(data)
                data = b""

    def __repr__(self) -> str:
        return f"TcpProxy(port={self.port}, target={self.target}, mode={self.mode}, drops={self.drops})"
