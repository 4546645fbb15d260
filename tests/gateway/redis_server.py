"""A real redis-server for tests: on a free loopback port or a unix socket, no persistence.

    with running_redis(tmp_path) as server:        # or running_redis(tmp_path, unix=True)
        open_limiter(server.url) ...

It waits until PING answers and fails loudly, with the server's log, when it cannot start.
`pause`/`resume` (SIGSTOP/SIGCONT) make a hung Redis; `stop`/`start` a dead and restarted one
on the same address. Used by tests/gateway/limits and other gateway tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 5


def redis_server_binary() -> str:
    found = os.environ.get("TEEROUTE_REDIS_SERVER") or shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "redis-server not found: install redis-server or set TEEROUTE_REDIS_SERVER"
        )
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; `url` stays the same across stop/start."""

    def __init__(self, directory: Path, *, unix: bool = False) -> None:
        self.directory = directory
        self.log = directory / "redis.log"
        self.socket_path = directory / "redis.sock" if unix else None
        self.port = 0 if unix else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        argv += ["--logfile", str(self.log), "--daemonize", "no"]
        if self.socket_path is not None:
            argv += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        return argv

    def start(self) -> None:
        """Start and wait for PING; on a port taken meanwhile, move to another one."""
        for _ in range(PORT_ATTEMPTS):
            self.process = subprocess.Popen(
                self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
            if self._wait_ready():
                return
            self.stop()
            if self.socket_path is not None or "already in use" not in self.log_text():
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server did not start ({self.argv()}):\n{self.log_text()}")

    def stop(self) -> None:
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
            self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def pause(self) -> None:
        """Freeze the server: connections stay open, nothing answers (a hung Redis)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def ping(self) -> bool:
        try:
            with self._connect() as conn:
                conn.settimeout(1.0)
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return "(no log written)"

    def _connect(self) -> socket.socket:
        if self.socket_path is not None:
            conn = socket.socket(socket.AF_UNIX)
            conn.settimeout(1.0)
            conn.connect(str(self.socket_path))
            return conn
        return socket.create_connection(("127.0.0.1", self.port), timeout=1.0)

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.ping():
                return True
            time.sleep(0.02)
        return False


@contextmanager
def running_redis(directory: Path, *, unix: bool = False) -> Iterator[RedisServer]:
    """A started server in `directory` (its log, socket and nothing else), stopped after."""
    server = RedisServer(directory, unix=unix)
    server.start()
    try:
        yield server
    finally:
        server.stop()
