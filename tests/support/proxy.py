"""A tiny TCP proxy that can cut every connection going through it, to simulate network drops."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class TcpProxy:
    """Forwards 127.0.0.1:<port> to target; drop_connections() resets all open connections.

    drop_after_bytes: once that many bytes went through (both directions, all connections),
    drop everything, once.
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
        self.drop_after_bytes = drop_after_bytes
        self.bytes_total = 0
        self.drops = 0
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.drop_connections(count=False)

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
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.rewrite_down), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rewrite: Callable[[bytes], bytes] | None) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(rewrite(data) if rewrite else data)
                trigger = False
                with self._lock:
                    self.bytes_total += len(data)
                    if self.drop_after_bytes is not None and self.bytes_total >= self.drop_after_bytes:
                        self.drop_after_bytes = None
                        trigger = True
                if trigger:
                    self.drop_connections()
                    return
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
