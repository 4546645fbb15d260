"""Paths inside a container root, resolved the way the container will see them.

An image may hold symlinks that point anywhere (`/etc/resolv.conf -> ../run/…`, absolute
links, `..` chains). Following them on the host while unpacking a layer or creating a
mount point could write outside the root, so every symlink is resolved here against the
root itself: `..` stops at the root and an absolute target starts from it, as it will once
the container runs (what runc's securejoin does).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

MAX_LINK_HOPS = 40  # Linux's own limit (ELOOP)


class UnsafePath(Exception):
    """A path that leaves the root, or loops."""


def relative_parts(name: str) -> list[str]:
    """The components of an archive member or container path, or UnsafePath when a `..`
    would climb out of the root (pure)."""
    parts: list[str] = []
    for part in PurePosixPath("/", name).parts[1:]:
        if part == "..":
            raise UnsafePath(f"{name!r} leaves the root")
        if part not in ("", "."):
            parts.append(part)
    return parts


def resolve(root: Path, path: str, follow_last: bool = True) -> Path:
    """`path` (relative to the root, or absolute inside it) as a host path under `root`,
    every symlink met on the way resolved inside the root; the last component is left
    as is when `follow_last` is false (to replace or remove the link itself)."""
    pending = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if (pending or follow_last) and candidate.is_symlink():
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise UnsafePath(f"too many symlinks resolving {path!r}")
            target = str(candidate.readlink())
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        resolved.append(part)
    return root.joinpath(*resolved)
