"""An emulated wide-area link on loopback, for benchmarks: TCP proxies behind a shared access link.

A `Link` has two directions (up: client -> server, down: server -> client).  Each direction is a
token bucket of `mbit` Mbit/s shared by every connection through the link (a small burst allowance,
then one chunk after another, in arrival order, like the queue in front of a real access link),
followed by a one-way propagation delay of rtt/2 applied to every chunk.  Chunks of a connection
are delivered in order.  Each connection direction may hold at most `window` bytes read but not yet
delivered; past that the proxy stops reading and TCP's own flow control pushes back on the sender,
as a receive window would.

`WanProxy` forwards 127.0.0.1:<port> to a target through a `Link`; the bytes are forwarded as they
are (implicit TLS passes through untouched), so it works in front of any server.  All proxies run
on one asyncio loop in a daemon thread.

    link = Link(rtt_ms=40, mbit=50)
    with WanProxy("127.0.0.1", server.tls_port, link) as proxy:
        ...  # connect to 127.0.0.1:proxy.port
    print(link.up.bytes, link.down.bytes)
"""

from __future__ import annotations

import asyncio
import collections
import threading

CHUNK = 16 * 1024  # read size: how finely connections interleave on the link (2.6 ms at 50 Mbit/s)


class Direction:
    """One direction of the link: a token bucket shared by all connections, then a delay."""

    def __init__(self, rate_bytes: float | None, delay: float, burst: int) -> None:
        self.rate = rate_bytes  # bytes per second; None = unlimited
        self.delay = delay
        self.burst = burst
        self.free_at = 0.0  # when the bucket has sent everything already queued
        self.bytes = 0
        self.chunks = 0

    def schedule(self, size: int, now: float) -> float:
        """Reserve the link for `size` bytes arriving at `now`; return when they are delivered."""
        self.bytes += size
        self.chunks += 1
        if not self.rate:
            return now + self.delay
        # A bucket that has been idle holds at most `burst` bytes of credit.
        start = max(self.free_at, now - self.burst / self.rate)
        self.free_at = start + size / self.rate
        return max(now, self.free_at) + self.delay


class Link:
    def __init__(self, rtt_ms: float = 40.0, mbit: float | None = 50.0, burst: int = 16 * 1024) -> None:
        self.rtt_ms, self.mbit = rtt_ms, mbit
        rate = mbit * 1e6 / 8 if mbit else None
        self.up = Direction(rate, rtt_ms / 2000, burst)
        self.down = Direction(rate, rtt_ms / 2000, burst)

    def limit_seconds(self, nbytes: int) -> float:
        """The least time `nbytes` can take through one direction of this link."""
        return nbytes * 8 / (self.mbit * 1e6) if self.mbit else 0.0

    def __repr__(self) -> str:
        return f"Link({self.rtt_ms:g} ms RTT, {self.mbit:g} Mbit/s each way)"


class _Loop:
    """The one event loop all proxies share, in a daemon thread."""

    _instance: _Loop | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="wan-link", daemon=True).start()

    @classmethod
    def get(cls) -> _Loop:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction, window: int) -> None:
    """Forward one direction of one connection through the link, in order."""
    loop = asyncio.get_running_loop()
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    queued = 0
    have_data = asyncio.Event()
    has_room = asyncio.Event()
    has_room.set()
    eof = False

    async def deliver() -> None:
        nonlocal queued
        while True:
            while not queue:
                if eof:
                    return
                have_data.clear()
                await have_data.wait()
            at, data = queue[0]
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            queue.popleft()
            queued -= len(data)
            if queued < window:
                has_room.set()
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            await has_room.wait()
            data = await reader.read(CHUNK)
            if not data:
                break
            queue.append((direction.schedule(len(data), loop.time()), data))
            queued += len(data)
            if queued >= window:
                has_room.clear()
            have_data.set()
    except (ConnectionError, OSError):
        pass
    finally:
        eof = True
        have_data.set()
    try:
        await sender
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class WanProxy:
    """Forwards 127.0.0.1:<port> to (target_host, target_port) through `link`."""

    def __init__(self, target_host: str, target_port: int, link: Link, window: int = 2 * 1024 * 1024) -> None:
        self.target = (target_host, target_port)
        self.link, self.window = link, window
        self.port = 0
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._loop = _Loop.get()

    def __enter__(self) -> WanProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=CHUNK * 4)

        self._server = self._loop.run(start())
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None

            async def stop() -> None:
                server.close()

            self._loop.run(stop())

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target, limit=CHUNK * 4)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(
                _pump(client_reader, server_writer, self.link.up, self.window),
                _pump(server_reader, client_writer, self.link.down, self.window),
            )
        finally:
            for w in (client_writer, server_writer):
                w.close()
