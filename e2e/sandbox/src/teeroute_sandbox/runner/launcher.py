"""Becomes one container: `python -m teeroute_sandbox.runner.launcher PLAN.json`.

Started by the supervisor inside the pod's network namespace, as root. It takes a private
mount and UTS namespace and sets the hostname; then, for an image from the OCI store
(`plan.rootfs`), builds the container's own root and pivots into it (`rootfs`); for a host
command, bind-mounts each volume at its mountPath on the host's tree (read-only where
asked). It makes the root read-only for readOnlyRootFilesystem, drops to the pod's
uid/gid/groups, asks to be killed if the runner dies, and execs the command. An exec probe
(`plan.join_pid`) instead joins the running container's namespaces and root.

Host mode: mount points missing on the host are created there as empty directories/files
(the mount namespace is private, the filesystem is not), and the host paths the command
needs (`plan.reveal`: the runner's interpreter, wherever the checkout lives) stay visible
even under a volume mounted above them (an emptyDir at /tmp over a checkout in /tmp).
Exit codes: 126 cannot set the container up, 127 command not found.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import sys
from pathlib import Path

from teeroute_sandbox.runner import rootfs
from teeroute_sandbox.runner import syscalls as sc
from teeroute_sandbox.runner.plan import LaunchPlan, Mount


def _mount(source: str | None, target: str, flags: int) -> None:
    sc.mount(source, target, flags)


def _bind(mount: Mount, created: list[Path] | None = None) -> None:
    source = Path(mount.source)
    target = Path(mount.target)
    if not source.exists():
        raise FileNotFoundError(errno.ENOENT, f"volume source {source} is missing")
    _make_mount_point(target, source.is_dir(), created if created is not None else [])
    _mount(str(source), str(target), sc.MS_BIND | sc.MS_REC)
    if mount.read_only:
        _mount(None, str(target), sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


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
        sc.mount("tmpfs", str(staging), 0, "tmpfs", "mode=0755")
        for child in sorted(children):
            _bind(Mount(str(ancestor / child), str(staging / child), read_only=False))
        _mount(str(staging), str(ancestor), sc.MS_MOVE)
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
    sc.die_with_parent(signal.SIGKILL)


def hidden_paths(paths: list[str], mount_targets: list[str]) -> list[str]:
    """Of `paths`, those a mount at a strict ancestor would hide, outermost only (pure).
    A volume mounted exactly at a path replaces it, as the pod asked."""

    def under(path: str, ancestor: str) -> bool:
        return path.startswith(ancestor.rstrip("/") + "/")

    hidden = sorted({p for p in paths if any(under(p, t) for t in mount_targets)})
    return [p for p in hidden if not any(under(p, q) for q in hidden)]


def _hold(paths: list[str]) -> list[tuple[str, int]]:
    """An O_PATH handle on each path, taken before the volumes may hide it."""
    return [(path, os.open(path, os.O_PATH | os.O_CLOEXEC)) for path in paths]


def _restore(held: list[tuple[str, int]]) -> None:
    """Bind each held path back where it was, over the volume that hid it; its mount point
    lives in that volume (not on the host), so nothing is recorded for removal."""
    for path, fd in held:
        _make_mount_point(Path(path), Path(f"/proc/self/fd/{fd}").is_dir(), [])
        _mount(f"/proc/self/fd/{fd}", path, sc.MS_BIND | sc.MS_REC)
        os.close(fd)


def passwd_with(uid: int, gid: int, passwd: str) -> str | None:
    """`passwd` with an entry for `uid` added, or None when it has one: images made for a
    non-root user carry that user in /etc/passwd (distroless: nonroot, 65532), and programs
    such as getpass.getuser() fail without it."""
    if any(line.split(":")[2:3] == [str(uid)] for line in passwd.splitlines()):
        return None
    return (
        passwd.rstrip("\n") + f"\nnonroot:x:{uid}:{gid}:container user:/nonexistent:/sbin/nologin\n"
    )


def _passwd_copy(plan: LaunchPlan, scratch: Path) -> list[tuple[str, int]]:
    """The host's /etc/passwd with the container user added (held, to be bound over it
    once the volumes are mounted: a volume may hide `scratch`), or nothing to bind."""
    augmented = passwd_with(plan.uid, plan.gid, Path("/etc/passwd").read_text())
    if augmented is None:
        return []
    copy = scratch / f"passwd-{plan.uid}"
    copy.write_text(augmented)
    copy.chmod(0o644)
    return _hold([str(copy)])


def _bind_passwd(held: list[tuple[str, int]]) -> None:
    for _, fd in held:
        _bind(Mount(f"/proc/self/fd/{fd}", "/etc/passwd", read_only=True))
        os.close(fd)


def set_up(plan: LaunchPlan, record: Path) -> None:
    _die_with_parent()
    if plan.join_pid:
        _join(plan.join_pid)
    else:
        sc.unshare(sc.CLONE_NEWNS | sc.CLONE_NEWUTS)
        _mount(None, "/", sc.MS_REC | sc.MS_PRIVATE)
        sc.sethostname(plan.hostname)
        if plan.rootfs:
            rootfs.enter_image_root(plan)
        else:
            _host_root(plan, record)
    os.setgroups(plan.groups)
    os.setgid(plan.gid)
    os.setuid(plan.uid)
    _die_with_parent()  # a change of credentials clears the parent-death signal
    if plan.no_new_privileges:
        sc.no_new_privileges()
    os.chdir(plan.working_dir)


def _host_root(plan: LaunchPlan, record: Path) -> None:
    held = _hold(hidden_paths(plan.reveal, [m.target for m in plan.mounts]))
    passwd = _passwd_copy(plan, record.parent)
    created: list[Path] = []
    try:
        for mount in plan.mounts:
            _bind(mount, created)
    finally:  # still root here, and the state directory not yet masked
        if created:
            with record.open("a") as out:
                out.writelines(f"{p}\n" for p in created)
    _restore(held)
    _bind_passwd(passwd)
    if plan.uid != 0:  # after the binds: masking may hide their sources (the state dir)
        _reveal(plan.reveal)
    if plan.read_only_root:
        _mount(None, "/", sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


def _join(pid: int) -> None:
    """Enter a running container: its mount and UTS namespaces, then its root."""
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sc.setns(f"/proc/{pid}/ns/mnt", sc.CLONE_NEWNS)
        sc.setns(f"/proc/{pid}/ns/uts", sc.CLONE_NEWUTS)
        os.fchdir(root)
        os.chroot(".")
    finally:
        os.close(root)


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
