"""Finds an image in the OCI image store (one OCI image layout directory) and reads its
manifest and config, checking every blob against its digest before use.

An image is a manifest descriptor in `index.json` whose `org.opencontainers.image.ref.name`
or `io.containerd.image.name` annotation is the image reference, exactly (the full
reference, e.g. `teeroute.dev/agent:0.1.0`). A descriptor that is itself an image index
picks its linux/<this machine> manifest.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teeroute_sandbox.runner.errors import ConfigError

Obj = dict[str, Any]
REF_ANNOTATIONS = ("org.opencontainers.image.ref.name", "io.containerd.image.name")
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "tar",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar": "tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
}
MAX_JSON_BYTES = 4 * 1024 * 1024
"""Manifests, configs and indexes are small; a larger one is refused before it is read."""
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class ImageError(ConfigError):
    """The image cannot be used: not found, malformed, or a blob fails its digest."""

    reason = "ErrImagePull"


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int
    compression: str  # "tar" | "gzip"


@dataclass(frozen=True)
class StoreImage:
    ref: str
    manifest_digest: str
    config: Obj = field(hash=False)
    layers: tuple[Layer, ...]


def digest_hex(digest: str) -> str:
    match = _DIGEST.fullmatch(digest)
    if not match:
        raise ImageError(f"unsupported or malformed digest {digest!r} (only sha256 is read)")
    return match.group(1)


def find_descriptor(index: Obj, ref: str) -> Obj | None:
    """The manifest descriptor named `ref` in an index, or None (pure)."""
    for descriptor in index.get("manifests") or []:
        annotations = descriptor.get("annotations") or {}
        if any(annotations.get(key) == ref for key in REF_ANNOTATIONS):
            return dict(descriptor)
    return None


def pick_platform(index: Obj, machine: str | None = None) -> Obj:
    """From a multi-platform index, the linux manifest for this machine (pure)."""
    arch = _ARCH.get(machine or platform.machine(), machine or platform.machine())
    for descriptor in index.get("manifests") or []:
        plat = descriptor.get("platform") or {}
        if plat.get("os") == "linux" and plat.get("architecture") == arch:
            return dict(descriptor)
    raise ImageError(f"the image index has no manifest for linux/{arch}")


class ImageStore:
    """One OCI image layout directory; `find` re-reads index.json when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._index: Obj = {}

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest_hex(digest)

    def has(self, ref: str) -> bool:
        return find_descriptor(self._read_index(), ref) is not None

    def find(self, ref: str) -> StoreImage | None:
        descriptor = find_descriptor(self._read_index(), ref)
        if descriptor is None:
            return None
        while descriptor.get("mediaType") in INDEX_TYPES:
            descriptor = pick_platform(self.read_json(descriptor))
        manifest = self.read_json(descriptor)
        config = self.read_json(manifest.get("config") or {})
        return StoreImage(
            ref=ref,
            manifest_digest=descriptor["digest"],
            config=config,
            layers=tuple(_layer(d) for d in manifest.get("layers") or []),
        )

    def read_json(self, descriptor: Obj) -> Obj:
        """A small blob, read and checked against the descriptor's digest and size."""
        digest, size = descriptor.get("digest", ""), descriptor.get("size")
        if not isinstance(size, int) or not 0 <= size <= MAX_JSON_BYTES:
            raise ImageError(f"blob {digest}: size {size!r} missing or above {MAX_JSON_BYTES}")
        try:
            data = self.blob_path(digest).read_bytes()[: size + 1]
        except FileNotFoundError as exc:
            raise ImageError(f"blob {digest} is missing from the store {self.path}") from exc
        check_digest(data, digest, size)
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise ImageError(f"blob {digest} is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ImageError(f"blob {digest} is not a JSON object")
        return parsed

    def _read_index(self) -> Obj:
        index = self.path / "index.json"
        try:
            st = index.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._stamp and st.st_size <= MAX_JSON_BYTES:
            try:
                parsed = json.loads(index.read_text())
            except (OSError, ValueError):
                return self._index  # mid-write by a builder without rename: keep the last one
            self._index = parsed if isinstance(parsed, dict) else {}
            self._stamp = stamp
        return self._index


def check_digest(data: bytes, digest: str, size: int) -> None:
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if len(data) != size or actual != digest:
        raise ImageError(
            f"blob {digest} does not match its descriptor "
            f"(read {len(data)} bytes with digest {actual}, expected {size} bytes)"
        )


def _layer(descriptor: Obj) -> Layer:
    media_type = descriptor.get("mediaType", "")
    if media_type not in LAYER_TYPES:
        raise ImageError(f"layer {descriptor.get('digest')}: unsupported media type {media_type!r}")
    digest_hex(descriptor.get("digest", ""))
    size = descriptor.get("size")
    if not isinstance(size, int) or size < 0:
        raise ImageError(f"layer {descriptor.get('digest')}: bad size {size!r}")
    return Layer(descriptor["digest"], size, LAYER_TYPES[media_type])
