"""A real, throwaway PostgreSQL server for gateway tests (the ledger, and whatever else needs one).

    with postgres_server() as server:          # initdb + postgres on a free loopback port
        url = server.create_database("t1")     # postgresql://postgres@127.0.0.1:PORT/t1

The Debian packages put the binaries in /usr/lib/postgresql/<version>/bin; the newest one found
is used. PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user
(setpriv, which execs in place, so the process we start is the postmaster we stop). Trust
authentication on loopback and a unix socket inside the data directory's parent: nothing is
reachable from outside the machine. Failing to start is an error with the server log, never a
skip: a test that silently does not run proves nothing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

START_TIMEOUT_S = 60
# Tests want speed, not durability: a crash only loses a throwaway database.
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresUnavailable(RuntimeError):
    """The test server could not be started; the message carries its log."""


@dataclass(frozen=True)
class PostgresServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    @property
    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"


def bin_dir() -> Path:
    """The newest PostgreSQL server binary directory installed."""
    found = sorted(
        (path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresUnavailable("no /usr/lib/postgresql/*/bin/initdb: install postgresql")
    return found[-1]


@contextmanager
def postgres_server(settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """initdb into a fresh temporary directory, start the server, yield it, stop it."""
    directory = Path(tempfile.mkdtemp(prefix="teeroute-pg-"))
    try:
        _own(directory)
        _initdb(directory)
        server = _start(directory, FAST if settings is None else settings)
        try:
            _wait_ready(server)
            yield server
        finally:
            _stop(server)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def _own(directory: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    directory.chmod(0o700)


def _initdb(directory: Path) -> None:
    argv = [str(bin_dir() / "initdb"), "-D", str(directory / "data"), "-U", "postgres"]
    argv += ["--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions"]
    done = subprocess.run([*_as_server_user(), *argv], capture_output=True, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        raise PostgresUnavailable(f"initdb failed ({done.returncode}):\n{output}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(directory: Path, settings: dict[str, str]) -> PostgresServer:
    port = _free_port()
    argv = [str(bin_dir() / "postgres"), "-D", str(directory / "data"), "-p", str(port)]
    argv += ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={directory}"]
    argv += ["-c", "max_connections=200"]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    log = (directory / "server.log").open("wb")
    with log:
        process = subprocess.Popen(
            [*_as_server_user(), *argv], stdout=log, stderr=subprocess.STDOUT
        )
    return PostgresServer(port, directory, process)


def _wait_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise PostgresUnavailable(
                f"postgres exited with {server.process.returncode}:\n{server.log}"
            )
        try:
            with psycopg.connect(server.url(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            time.sleep(0.05)
    raise PostgresUnavailable(f"postgres did not accept connections:\n{server.log}")


def _stop(server: PostgresServer) -> None:
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGINT)  # fast shutdown: abort sessions, checkpoint
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
