"""Which images the runner runs, and how.

An image reference is looked up first in the OCI image store (`oci.ImageStore`): such an
image runs from its own root filesystem, with its config's ENTRYPOINT, CMD, User, Env and
WorkingDir. Otherwise it may map to a host command (`ImageConfig`, the local stand-in for
what an image carries), run as a host process: the built-in sandbox probe, and what
`<state>/images.json` adds (re-read when it changes). Keys match the image reference
exactly, or with `*` as a glob (`teeroute.dev/agent:*`).
"""

from __future__ import annotations

import fnmatch
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teeroute_sandbox.runner import inroot, users
from teeroute_sandbox.runner.oci import ImageError, ImageStore, StoreImage
from teeroute_sandbox.runner.rootfs_cache import ensure_rootfs

PROBE_IMAGE = "teeroute.dev/sandbox-probe:dev"
MAX_ACCOUNT_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    user: int = 0
    env: dict[str, str] = field(default_factory=dict)
    group: int | None = None
    """The image user's group; applies while the pod does not set another runAsUser."""
    working_dir: str = ""

    @classmethod
    def from_oci(cls, raw: dict[str, Any], uid: int, gid: int) -> ImageConfig:
        """From an OCI image config, its User already resolved to numbers (`users`)."""
        config = raw.get("config") or {}
        env: dict[str, str] = {}
        for item in config.get("Env") or []:
            name, equals, value = str(item).partition("=")
            if equals:
                env[name] = value
        return cls(
            entrypoint=tuple(config.get("Entrypoint") or ()),
            cmd=tuple(config.get("Cmd") or ()),
            user=uid,
            env=env,
            group=gid,
            working_dir=config.get("WorkingDir") or "",
        )

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> ImageConfig:
        return cls(
            entrypoint=tuple(raw["entrypoint"]),
            cmd=tuple(raw.get("cmd", ())),
            user=int(raw.get("user", 0)),
            env=dict(raw.get("env", {})),
        )


def image_user(raw: dict[str, Any]) -> str:
    """An OCI image config's User, as written ("" when unset)."""
    return str((raw.get("config") or {}).get("User") or "")


def builtin_images() -> dict[str, ImageConfig]:
    python = sys.executable
    env = {"PYTHONUNBUFFERED": "1"}  # as a Python image's Dockerfile sets it: logs as they come
    return {
        PROBE_IMAGE: ImageConfig((python, "-m", "teeroute_sandbox.probe"), user=65532, env=env),
    }


@dataclass(frozen=True)
class Resolved:
    """Where an image comes from: the OCI store (`store`) or a host command (`host`)."""

    ref: str
    store: StoreImage | None = None
    host: ImageConfig | None = None


def _account_file(root: Path, name: str) -> str:
    path = inroot.resolve(root, name)
    if not path.is_file():
        return ""
    with path.open("rb") as f:
        return f.read(MAX_ACCOUNT_FILE_BYTES).decode(errors="replace")


def store_image_config(image: StoreImage, root: Path) -> ImageConfig:
    """The config of an unpacked store image, its User looked up in its own files."""
    uid, gid = users.user_ids(
        image_user(image.config),
        _account_file(root, "/etc/passwd"),
        _account_file(root, "/etc/group"),
    )
    return ImageConfig.from_oci(image.config, uid, gid)


class ImageMap:
    def __init__(
        self,
        extra_file: Path,
        store: ImageStore | None = None,
        rootfs_cache: Path | None = None,
    ) -> None:
        self._file = extra_file
        self._mtime: float | None = None
        self._images = builtin_images()
        self.store = store
        self.rootfs_cache = rootfs_cache

    def unpacked(self, image: StoreImage) -> Path:
        """The image's root filesystem, unpacked on first use."""
        if self.store is None or self.rootfs_cache is None:
            raise ImageError("the runner has no image store")
        return ensure_rootfs(self.store, image, self.rootfs_cache)

    def known(self, image: str) -> bool:
        """Whether the runner can run `image` (cheap: reads no blob)."""
        return (self.store is not None and self.store.has(image)) or self.resolve(image) is not None

    def lookup(self, image: str) -> Resolved | None:
        """The store's image first, else a host command; None when neither knows it."""
        if self.store is not None:
            found = self.store.find(image)
            if found is not None:
                return Resolved(image, store=found)
        host = self.resolve(image)
        return Resolved(image, host=host) if host is not None else None

    def resolve(self, image: str) -> ImageConfig | None:
        """The host command `image` maps to, if any."""
        self._reload()
        if image in self._images:
            return self._images[image]
        for pattern, config in self._images.items():
            if "*" in pattern and fnmatch.fnmatchcase(image, pattern):
                return config
        return None

    def _reload(self) -> None:
        try:
            mtime = self._file.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        self._mtime = mtime
        images = builtin_images()
        if mtime is not None:
            raw = json.loads(self._file.read_text())
            images.update({image: ImageConfig.parse(cfg) for image, cfg in raw.items()})
        self._images = images


def register(extra_file: Path, image: str, config: ImageConfig) -> None:
    """Add or replace a mapping in `extra_file` (the runner picks it up on its next look)."""
    raw = json.loads(extra_file.read_text()) if extra_file.exists() else {}
    raw[image] = {
        "entrypoint": list(config.entrypoint),
        "cmd": list(config.cmd),
        "user": config.user,
        "env": config.env,
    }
    tmp = extra_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(raw, indent=2))
    tmp.replace(extra_file)
