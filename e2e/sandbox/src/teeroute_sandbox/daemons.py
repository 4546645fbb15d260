"""Start, find and stop the sandbox's long-running processes by pid file.

A pid file holds the pid and the process's start time (from /proc), so a recycled pid is
never mistaken for our process. Daemons get their own session (process group) and a log
file under the state directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from teeroute_sandbox.layout import Layout


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return fields[19]


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def alive(pid: int, started: str) -> bool:
    return start_time(pid) == started


def spawn(
    layout: Layout,
    name: str,
    argv: list[str],
    fingerprint: str = "-",
) -> int:
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.pids.mkdir(parents=True, exist_ok=True)
    with layout.log(name).open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    layout.pidfile(name).write_text(f"{proc.pid} {start_time(proc.pid)} {fingerprint}\n")
    return proc.pid


def running(layout: Layout, name: str) -> int | None:
    """The daemon's pid while it runs, else None."""
    record = _record(layout, name)
    if record is None:
        return None
    pid, started, _ = record
    return pid if alive(pid, started) else None


def fingerprint(layout: Layout, name: str) -> str | None:
    """What the running daemon was started from (see `spawn`)."""
    record = _record(layout, name)
    return record[2] if record else None


def _record(layout: Layout, name: str) -> tuple[int, str, str] | None:
    try:
        pid_text, started, *rest = layout.pidfile(name).read_text().split()
        return int(pid_text), started, rest[0] if rest else "-"
    except (OSError, ValueError):
        return None


def stop(layout: Layout, name: str, grace_s: float = 10.0) -> None:
    pid = running(layout, name)
    if pid is not None:
        terminate([pid], grace_s)
    layout.pidfile(name).unlink(missing_ok=True)


def terminate(pids: list[int], grace_s: float = 10.0) -> None:
    """SIGTERM each process group, then SIGKILL whatever is left after `grace_s` (0: at
    once, as a crash), and wait (a few seconds at most) until they are gone."""
    watched: dict[int, str] = {}
    for pid in pids:
        started = start_time(pid)
        if started is not None:
            watched[pid] = started
    for pid in watched:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while watched and time.monotonic() < deadline:
        watched = {pid: st for pid, st in watched.items() if alive(pid, st)}
        time.sleep(0.05)
    for pid in watched:
        _signal(pid, signal.SIGKILL)
    # Gone before we return, so a restart can bind the same ports at once.
    deadline = time.monotonic() + 5.0
    while watched and time.monotonic() < deadline:
        watched = {pid: st for pid, st in watched.items() if alive(pid, st)}
        time.sleep(0.05)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
