"""Which images the runner runs, and as what local command.

An image maps to an `ImageConfig`, the local stand-in for what an image carries: its
ENTRYPOINT (`entrypoint`), CMD (`cmd`), default user and env. Built-in images come first;
`<state>/images.json` adds or overrides (re-read when it changes). Keys match the image
reference exactly, or with `*` as a glob (`teeroute.dev/agent:*`).
"""

from __future__ import annotations

import fnmatch
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROBE_IMAGE = "teeroute.dev/sandbox-probe:dev"
OPERATOR_IMAGE = "teeroute.dev/operator:dev"
AGENT_IMAGE = "teeroute.dev/agent:dev"
ENGINE_SIM_IMAGE = "teeroute.dev/engine-sim:dev"


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    user: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> ImageConfig:
        return cls(
            entrypoint=tuple(raw["entrypoint"]),
            cmd=tuple(raw.get("cmd", ())),
            user=int(raw.get("user", 0)),
            env=dict(raw.get("env", {})),
        )


def builtin_images() -> dict[str, ImageConfig]:
    python = sys.executable
    env = {"PYTHONUNBUFFERED": "1"}  # as a Python image's Dockerfile sets it: logs as they come
    return {
        PROBE_IMAGE: ImageConfig((python, "-m", "teeroute_sandbox.probe"), user=65532, env=env),
        # The operator's image as the runner plays it: this workspace's interpreter.
        OPERATOR_IMAGE: ImageConfig((python, "-m", "teeroute_operator"), user=65532, env=env),
        # A miner pod: the enclave agent beside the engine simulator (vLLM's arguments).
        AGENT_IMAGE: ImageConfig((python, "-m", "teeroute_enclave"), user=65532, env=env),
        ENGINE_SIM_IMAGE: ImageConfig((python, "-m", "teeroute_engine_sim"), user=65532, env=env),
    }


class ImageMap:
    def __init__(self, extra_file: Path) -> None:
        self._file = extra_file
        self._mtime: float | None = None
        self._images = builtin_images()

    def resolve(self, image: str) -> ImageConfig | None:
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
