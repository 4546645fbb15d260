"""Run a command from an unpacked image as a container runtime would, without one.

The image's root fs is bind-mounted read-only (as a pod's `readOnlyRootFilesystem`), a host
folder is its writable /tmp (the pod's emptyDir), /dev is the host's and /proc the new PID
namespace's; the command runs under chroot as the image config's user with exactly the
image's environment (plus `env`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

SCRIPT = """set -e
root="$1"; tmp="$2"; user="$3"; shift 3
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount --bind "$tmp" "$root/tmp"
mount --bind /dev "$root/dev"
mount -t proc proc "$root/proc"
exec chroot --userspec="$user" "$root" "$@"
"""


def writable_tmp(parent: Path) -> Path:
    """A folder for the container's /tmp that its user can write, as a pod's emptyDir."""
    tmp = parent / "container-tmp"
    tmp.mkdir(mode=0o1777)
    tmp.chmod(0o1777)
    return tmp


def serving(proc: subprocess.Popen[str], url: str) -> bool:
    """Whether `url` answers 200; an exited process fails at once, with its output."""
    if proc.poll() is not None:
        output = proc.stdout.read() if proc.stdout else ""
        raise AssertionError(f"exited {proc.returncode} before serving:\n{output[-3000:]}")
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill the container: its first process is the PID namespace's init, whose death ends
    every other. (`--kill-child` alone does not reach it: the user change in chroot clears
    the parent-death signal.)"""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    pids = children.read_text().split() if children.exists() else []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    proc.kill()
    proc.communicate(timeout=30)


def image_config(bundle: Path) -> dict[str, Any]:
    """The runtime config umoci wrote from the image config (args, env, user)."""
    config: dict[str, Any] = json.loads((bundle / "config.json").read_text())
    return config


def argv(bundle: Path, tmp: Path, args: list[str] | None = None) -> list[str]:
    process = image_config(bundle)["process"]
    user = f"{process['user']['uid']}:{process['user']['gid']}"
    command = args if args is not None else process["args"]
    return [
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        SCRIPT,
        "sh",
        str(bundle / "rootfs"),
        str(tmp),
        user,
        *command,
    ]


def environment(bundle: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    pairs = dict(e.split("=", 1) for e in image_config(bundle)["process"]["env"])
    # PATH must also find unshare/chroot on the host before the chroot; the image's has them.
    return {**pairs, **(env or {})}


def run(
    bundle: Path, tmp: Path, args: list[str] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(bundle, tmp, args),
        env=environment(bundle, env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def start(
    bundle: Path, tmp: Path, args: list[str] | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv(bundle, tmp, args),
        env=environment(bundle, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
