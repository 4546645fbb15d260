"""Named network namespaces (`ip netns`): the sandbox's own and one per runner pod.

Everything the sandbox runs lives in a namespace of its own, so pod and service addresses
are routed only there and no test traffic can leave the machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from teeroute_sandbox.errors import NamespacesNotPermitted, SandboxError

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run `ip [-n netns] args…`; raise SandboxError naming the command when it fails."""
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SandboxError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return done.stdout


def create(name: str) -> None:
    if exists(name):
        return
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if done.returncode != 0:
        raise NamespacesNotPermitted(
            f"cannot create network namespace {name!r}: {done.stderr.strip()}. The sandbox "
            "needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) on a kernel that permits namespaces."
        )
    ip("link", "set", "lo", "up", netns=name)


def delete(name: str) -> None:
    if exists(name):
        ip("netns", "delete", name)


def names(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def pids(name: str) -> list[int]:
    """Processes whose network namespace is `name`."""
    if not exists(name):
        return []
    return [int(pid) for pid in ip("netns", "pids", name, check=False).split()]


def exec_argv(name: str, argv: list[str]) -> list[str]:
    """`argv` prefixed to run inside namespace `name` (network only: the mount namespace
    stays shared, so namespaces a daemon creates with `ip netns add` are seen by all)."""
    return ["nsenter", f"--net={NETNS_DIR / name}", "--", *argv]


def shell_argv(name: str, argv: list[str]) -> list[str]:
    """`argv` prefixed the way `ip netns exec` runs it: /sys shows the namespace's links."""
    return ["ip", "netns", "exec", name, *argv]


def sysctl(name: str, key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    done = subprocess.run(
        exec_argv(name, ["sh", "-c", f"echo {value} > {path}"]), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SandboxError(f"cannot set {key}={value} in namespace {name}: {done.stderr.strip()}")


_outside_fd: int | None = None
"""The namespace the process started in, kept open by the first `enter`, for `outside`."""


def enter(name: str) -> None:
    """Move the calling thread (and threads it starts later) into namespace `name`.

    Call it from the main thread before starting others: threads that already exist stay
    where they are.
    """
    global _outside_fd
    if _outside_fd is None:
        _outside_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        _setns(fd, name)
    finally:
        os.close(fd)


@contextlib.contextmanager
def outside() -> Iterator[None]:
    """Run the block (and what it starts) in the namespace the process began in, e.g. a
    download from a package registry by a test process that `enter`ed the sandbox (whose
    namespace has no route out); back where it was afterwards."""
    if _outside_fd is None:
        yield
        return
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(_outside_fd, "the host's")
        try:
            yield
        finally:
            _setns(here, "the sandbox's")
    finally:
        os.close(here)


def _setns(fd: int, name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NamespacesNotPermitted(f"cannot enter network namespace {name}: {os.strerror(err)}")
