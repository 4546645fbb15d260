"""The image store: one OCI image layout directory (oci-layout, index.json, blobs/sha256).

Each image is a manifest in index.json annotated with its full reference twice:
`org.opencontainers.image.ref.name` (the OCI convention, what umoci and the sandbox runner
look up) and `io.containerd.image.name` (so `ctr images import` names it). Writing an image
replaces the one of the same reference; blobs no manifest reaches any more are removed.
JSON is written with sorted keys and no whitespace, so the same image has the same digest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from teeroute_images.errors import ImageBuildError

Obj = dict[str, Any]
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def canonical(document: Obj) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def blob_path(store: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    return store / "blobs" / algorithm / hexdigest


def descriptor(data: bytes, media_type: str) -> Obj:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def put_bytes(store: Path, data: bytes, media_type: str) -> Obj:
    """Store a blob; return its descriptor."""
    found = descriptor(data, media_type)
    path = blob_path(store, found["digest"])
    if not path.exists():
        _atomic_write(path, data)
    return found


def put_file(store: Path, source: Path, digest: str) -> None:
    """Store a blob whose digest is already known (a layer), by hard link when possible."""
    path = blob_path(store, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            os.link(source, partial)
        except OSError:
            shutil.copyfile(source, partial)
        partial.replace(path)


def read_index(store: Path) -> Obj:
    index = store / "index.json"
    if not index.exists():
        return {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}
    try:
        document: Obj = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        raise ImageBuildError(f"{index}: not an OCI index ({exc})") from exc
    return document


def images(store: Path) -> dict[str, Obj]:
    """Reference -> manifest descriptor, for every image in the store."""
    return {
        m["annotations"][REF_NAME]: m
        for m in read_index(store).get("manifests", [])
        if REF_NAME in m.get("annotations", {})
    }


def read_blob(store: Path, digest: str) -> Obj:
    document: Obj = json.loads(blob_path(store, digest).read_bytes())
    return document


def add_image(
    store: Path, ref: str, manifest: Obj, config: bytes, layers: list[tuple[Path, str]]
) -> Obj:
    """Store an image under `ref` (replacing an older one): its layers ((file, digest)), its
    config and manifest; return the manifest's descriptor. All under the store's lock, so
    another build's garbage collection cannot take a blob before the index names it."""
    with _locked(store):
        for path, digest in layers:
            put_file(store, path, digest)
        put_bytes(store, config, CONFIG)
        found = put_bytes(store, canonical(manifest), MANIFEST)
        found["annotations"] = {REF_NAME: ref, CONTAINERD_NAME: ref}
        index = read_index(store)
        kept = [
            m for m in index.get("manifests", []) if m.get("annotations", {}).get(REF_NAME) != ref
        ]
        index["manifests"] = sorted([*kept, found], key=lambda m: m["annotations"][REF_NAME])
        _atomic_write(store / "oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
        _atomic_write(store / "index.json", canonical(index))
        _collect_garbage(store, index)
    return found


def _reachable(store: Path, index: Obj) -> set[str]:
    found: set[str] = set()
    for descriptor in index.get("manifests", []):
        found.add(descriptor["digest"])
        manifest = read_blob(store, descriptor["digest"])
        found.add(manifest["config"]["digest"])
        found.update(layer["digest"] for layer in manifest["layers"])
    return found


def _collect_garbage(store: Path, index: Obj) -> None:
    reachable = _reachable(store, index)
    for path in (store / "blobs" / "sha256").iterdir():
        # Only finished blobs: a `.partial` may be a concurrent build's layer on its way in.
        if len(path.name) == 64 and "sha256:" + path.name not in reachable:
            path.unlink()


@contextmanager
def _locked(store: Path) -> Iterator[None]:
    """One writer at a time (two builds into one store must not drop each other's images)."""
    store.mkdir(parents=True, exist_ok=True)
    with (store / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
