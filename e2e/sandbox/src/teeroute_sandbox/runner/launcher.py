"""Becomes one container: `python -m teeroute_sandbox.runner.launcher PLAN.json`.

Started by the supervisor inside the pod's network namespace, as root. It takes a private
mount and UTS namespace, bind-mounts each volume at its mountPath (read-only where asked),
makes the root read-only for readOnlyRootFilesystem, sets the hostname, drops to the
pod's uid/gid/groups, asks to be killed if the runner dies, and execs the command.

Mount points missing on the host are created there as empty directories/files (the mount
namespace is private, the filesystem is not); /var/run/secrets/… lives on a tmpfs.
Exit codes: 126 cannot set the container up, 127 command not found.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import signal
import sys
from pathlib import Path

from teeroute_sandbox.runner.plan import LaunchPlan, Mount

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_MOVE = 0x2000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    src = source.encode() if source else None
    _check(_libc.mount(src, target.encode(), None, flags, None), f"mount {target}")


def _bind(mount: Mount, created: list[Path] | None = None) -> None:
    source = Path(mount.source)
    target = Path(mount.target)
    if not source.exists():
        raise FileNotFoundError(errno.ENOENT, f"volume source {source} is missing")
    _make_mount_point(target, source.is_dir(), created if created is not None else [])
    _mount(str(source), str(target), MS_BIND | MS_REC)
    if mount.read_only:
        _mount(None, str(target), MS_BIND | MS_REMOUNT | MS_RDONLY)


def untraversable_ancestors(paths: list[str]) -> dict[Path, set[str]]:
    """For each path, its highest ancestor others may not enter (mode without o+x), with
    the children of it that the paths need."""
    needed: dict[Path, set[str]] = {}
    for raw in paths:
        path = Path(raw)
        for ancestor in reversed(path.parents[:-1]):  # from the top, skipping "/"
            if not ancestor.stat().st_mode & 0o001:
                needed.setdefault(ancestor, set()).add(path.relative_to(ancestor).parts[0])
                break
    return needed


def _reveal(paths: list[str]) -> None:
    """Let a non-root user reach `paths` (e.g. the Python interpreter under /root): over
    each untraversable ancestor lay a world-readable tmpfs holding only what is needed."""
    for ancestor, children in untraversable_ancestors(paths).items():
        staging = Path(f"/run/teeroute-launcher-{os.getpid()}")
        staging.mkdir(mode=0o755, exist_ok=True)
        _check(
            _libc.mount(b"tmpfs", str(staging).encode(), b"tmpfs", 0, b"mode=0755"),
            f"mount tmpfs {staging}",
        )
        for child in sorted(children):
            _bind(Mount(str(ancestor / child), str(staging / child), read_only=False))
        _mount(str(staging), str(ancestor), MS_MOVE)
        staging.rmdir()


def _make_mount_point(target: Path, directory: bool, created: list[Path]) -> None:
    """Create what is missing of `target` on the host, noting each path created (outermost
    first) so the runner can remove them, still empty, when the pod goes."""
    missing = [p for p in [*reversed(target.parents), target] if not p.exists()]
    for path in missing:
        if path == target and not directory:
            path.touch()
        else:
            path.mkdir()
        created.append(path)


def _die_with_parent() -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")


def passwd_with(uid: int, gid: int, passwd: str) -> str | None:
    """`passwd` with an entry for `uid` added, or None when it has one: images made for a
    non-root user carry that user in /etc/passwd (distroless: nonroot, 65532), and programs
    such as getpass.getuser() fail without it."""
    if any(line.split(":")[2:3] == [str(uid)] for line in passwd.splitlines()):
        return None
    return (
        passwd.rstrip("\n") + f"\nnonroot:x:{uid}:{gid}:container user:/nonexistent:/sbin/nologin\n"
    )


def _passwd(plan: LaunchPlan, scratch: Path) -> None:
    augmented = passwd_with(plan.uid, plan.gid, Path("/etc/passwd").read_text())
    if augmented is not None:
        copy = scratch / f"passwd-{plan.uid}"
        copy.write_text(augmented)
        copy.chmod(0o644)
        _bind(Mount(str(copy), "/etc/passwd", read_only=True))


def set_up(plan: LaunchPlan, record: Path) -> None:
    _die_with_parent()
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    host = plan.hostname.encode()
    _check(_libc.sethostname(host, len(host)), "sethostname")
    created: list[Path] = []
    try:
        for mount in plan.mounts:
            _bind(mount, created)
    finally:  # still root here, and the state directory not yet masked
        if created:
            with record.open("a") as out:
                out.writelines(f"{p}\n" for p in created)
    _passwd(plan, record.parent)
    if plan.uid != 0:  # after the binds: masking may hide their sources (the state dir)
        _reveal(plan.reveal)
    if plan.read_only_root:
        _mount(None, "/", MS_BIND | MS_REMOUNT | MS_RDONLY)
    os.setgroups(plan.groups)
    os.setgid(plan.gid)
    os.setuid(plan.uid)
    _die_with_parent()  # a change of credentials clears the parent-death signal
    os.chdir(plan.working_dir)


def created_record(plan_file: Path) -> Path:
    return plan_file.with_suffix(".created")


def remove_created(plan_file: Path) -> None:
    """Undo `_make_mount_point` for a container that is gone: innermost first, and only
    what is still empty (another pod may have put something there since)."""
    record = created_record(plan_file)
    if not record.exists():
        return
    for line in reversed(record.read_text().splitlines()):
        path = Path(line)
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            elif path.is_file() and path.stat().st_size == 0:
                path.unlink()


def main(argv: list[str]) -> int:
    plan_file = Path(argv[1])
    plan = LaunchPlan.from_json(json.loads(plan_file.read_text()))
    try:
        set_up(plan, created_record(plan_file))
    except OSError as exc:
        print(f"sandbox runner: cannot set up the container: {exc}", file=sys.stderr)
        return 126
    try:
        os.execvpe(plan.argv[0], plan.argv, plan.env)  # noqa: S606 - becoming the container
    except OSError as exc:
        print(f"sandbox runner: cannot run {plan.argv[0]!r}: {exc.strerror}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
