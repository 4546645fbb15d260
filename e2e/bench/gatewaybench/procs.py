"""Processes of the gateway benchmark and what /proc says about them.

Every process starts in its own session (so a Ctrl-C at the terminal reaches only the
harness, which then stops them in order), asks the kernel to SIGTERM it if the harness dies
(PR_SET_PDEATHSIG: no orphans even on SIGKILL), and is pinned to one core with taskset.
`Fleet` stops everything it started, newest first, whatever way the run ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark step could not run (a process died, a check failed); the message says why."""


def die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pinned(argv: Sequence[str], core: int | None) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if core is not None else list(argv)


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM the whole group, SIGKILL what is left after the grace period."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_GRACE_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # stragglers (workers) even if the leader is gone
        self.proc.wait()


@dataclass
class Fleet:
    """The processes of one run; a context manager that stops them all on exit."""

    log_dir: Path
    services: list[Service] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        core: int | None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Service:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                pinned(argv, core),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # safe: the harness is single-threaded
                env=env,
                cwd=cwd,
            )
        service = Service(name, proc, log)
        self.services.append(service)
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        self.services.remove(service)

    def stop_newer_than(self, count: int) -> None:
        """Stop the services started after the first `count`, newest first."""
        while len(self.services) > count:
            self.stop(self.services[-1])

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop_newer_than(0)


def wait_ready(service: Service, url: str, timeout_s: float) -> None:
    """Poll `url` until it answers 200; fail early (with the log's tail) if the process dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not service.alive():
            raise BenchError(f"{service.name} exited during start:\n{service.log_tail()}")
        with (
            contextlib.suppress(OSError, urllib.error.HTTPError),
            urllib.request.urlopen(url, timeout=2) as answer,  # noqa: S310 - loopback
        ):
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise BenchError(f"{service.name} not ready at {url} in {timeout_s:g} s")
        time.sleep(0.2)


def tree(pid: int) -> list[int]:
    """The process and all its descendants (uvicorn may fork workers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                queue.extend(int(child) for child in task.read_text().split())
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of the process tree (VmRSS), in MiB."""
    total_kib = 0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def busy_seconds_by_core() -> dict[int, float]:
    """CPU time each core spent busy (any process, interrupts, steal) since boot."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, values[:8])
            busy[int(name[3:])] = (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    return busy


def cpu_seconds(pid: int) -> float:
    """User + system CPU time consumed so far by the live members of the process tree."""
    ticks = 0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{member}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # the name may contain spaces
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLOCK_TICKS
