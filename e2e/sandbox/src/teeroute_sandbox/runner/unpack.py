"""Applies an image layer (tar or tar+gzip) onto a root directory, as a container runtime
does: in order, honouring OCI whiteouts, keeping owners and modes.

Refused (`UnsafeLayer`): members whose path leaves the root (`..`), hard links to outside
it, device nodes (a container gets its /dev from the runtime, never from an image), and
a blob whose bytes do not match its digest. Symlinks in the root are resolved inside it
(`inroot`), so no member is ever written through a link to the host.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from teeroute_sandbox.runner.inroot import UnsafePath, relative_parts, resolve
from teeroute_sandbox.runner.oci import ImageError, Layer

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class UnsafeLayer(ImageError):
    """A layer the runner will not unpack (names the member and why)."""


@dataclass(frozen=True)
class Action:
    """What one archive member asks for (pure decision of `classify`)."""

    kind: str  # "write" | "whiteout" | "opaque" | "skip"
    path: str  # relative to the root; for "opaque", the directory


def classify(name: str) -> Action:
    try:
        parts = relative_parts(name)
    except UnsafePath as exc:
        raise UnsafeLayer(f"layer member {name!r} leaves the root") from exc
    if not parts:
        return Action("skip", "")  # the root itself keeps the runner's mode
    parent, base = "/".join(parts[:-1]), parts[-1]
    if base == OPAQUE:
        return Action("opaque", parent)
    if base.startswith(WHITEOUT + WHITEOUT):
        return Action("skip", "")  # other AUFS metadata (.wh..wh.plnk …)
    if base.startswith(WHITEOUT):
        return Action("whiteout", "/".join([*parts[:-1], base[len(WHITEOUT) :]]))
    return Action("write", "/".join(parts))


class _HashingReader:
    """Counts and hashes what tarfile reads, so the digest is checked in the same pass."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n >= 0 else self.limit + 1 - self.size)
        self.sha.update(data)
        self.size += len(data)
        if self.size > self.limit:
            raise UnsafeLayer(f"layer blob is larger than its descriptor's {self.limit} bytes")
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def apply_layer(blob: Path, layer: Layer, root: Path) -> None:
    """Unpack `blob` onto `root`. Raises UnsafeLayer (digest mismatch included); the caller
    throws the partly written root away then (it unpacks into a private temp dir)."""
    if not blob.is_file():
        raise ImageError(f"layer {layer.digest} is missing from the image store")
    with blob.open("rb") as raw:  # checked before a byte of it is unpacked
        reader = _HashingReader(raw, layer.size)
        reader.drain()
    _check(reader, layer)
    with blob.open("rb") as raw:  # and again as it is unpacked: the file may have changed
        reader = _HashingReader(raw, layer.size)
        stream: Any = reader
        if layer.compression == "gzip":
            stream = gzip.GzipFile(fileobj=stream, mode="rb")
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            written: set[str] = set()
            for member in tar:
                _apply(tar, member, root, written)
        reader.drain()
    _check(reader, layer)


def _check(reader: _HashingReader, layer: Layer) -> None:
    actual = "sha256:" + reader.sha.hexdigest()
    if actual != layer.digest or reader.size != layer.size:
        raise UnsafeLayer(
            f"layer {layer.digest} does not match its descriptor "
            f"(read {reader.size} bytes with digest {actual}, expected {layer.size} bytes)"
        )


def _apply(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, written: set[str]) -> None:
    action = classify(member.name)
    if action.kind == "whiteout":
        _remove(_target(root, action.path))
    elif action.kind == "opaque":
        _empty_lower(root, action.path, written)
    elif action.kind == "write":
        _write(tar, member, root, action.path)
        written.add(action.path)


def _target(root: Path, rel: str) -> Path:
    """The host path for `rel`: its parent resolved inside the root, its name not."""
    parent, _, name = rel.rpartition("/")
    return resolve(root, parent) / name


def _empty_lower(root: Path, rel: str, written: set[str]) -> None:
    """An opaque directory hides what lower layers put in it (not this layer's entries)."""
    directory = resolve(root, rel)
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if f"{rel}/{child.name}".lstrip("/") not in written:
            _remove(child)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, rel: str) -> None:
    if member.ischr() or member.isblk():
        raise UnsafeLayer(f"layer member {member.name!r} is a device node")
    path = _target(root, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (member.isdir() and path.is_dir() and not path.is_symlink()):
        _remove(path)
    if member.isdir():
        path.mkdir(exist_ok=True)
    elif member.isreg():
        _write_file(tar, member, path)
    elif member.issym():
        path.symlink_to(member.linkname)
    elif member.islnk():
        os.link(_link_source(root, member), path, follow_symlinks=False)
    elif member.isfifo():
        os.mkfifo(path)
    else:
        raise UnsafeLayer(f"layer member {member.name!r} has unsupported type {member.type!r}")
    _set_metadata(path, member)


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise UnsafeLayer(f"layer member {member.name!r} has no content")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def _link_source(root: Path, member: tarfile.TarInfo) -> Path:
    try:
        rel = "/".join(relative_parts(member.linkname))
    except UnsafePath as exc:
        raise UnsafeLayer(f"hard link {member.name!r} points out of the root") from exc
    source = _target(root, rel)
    if not source.exists() or source.is_dir() or source.is_symlink():
        raise UnsafeLayer(f"hard link {member.name!r} -> {member.linkname!r}: no such file")
    return source


def _set_metadata(path: Path, member: tarfile.TarInfo) -> None:
    os.chown(path, member.uid, member.gid, follow_symlinks=False)
    if not member.issym():  # chown clears setuid bits: the mode comes after it
        path.chmod(member.mode & 0o7777)
    if not member.isdir():  # a directory's mtime changes as its children arrive anyway
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
