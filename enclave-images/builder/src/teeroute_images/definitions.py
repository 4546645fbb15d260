"""What each image is: the single source of truth for the builder and the Dockerfiles.

Every image is the Debian base (`BASE_PACKAGES`), the locked third-party wheels of one
workspace package (`uv export --package`), or a committed requirements lock, and our own
wheels. `tests/images/test_dockerfiles.py` checks that each `enclave-images/<name>/Dockerfile`
says the same entrypoint, cmd, user, environment and build command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from teeroute_images import __version__

REGISTRY = "teeroute.dev"
SOURCE_DATE_EPOCH = 1767225600
"""Every timestamp in every image (2026-01-01T00:00:00Z): files, config, history."""
USER = "65532:65532"
PYTHON = "/usr/bin/python3.11"
SITE_PACKAGES = "/app/site-packages"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = (
    "base-files", "netbase", "tzdata", "python3.11-minimal", "libpython3.11-stdlib", "libstdc++6"
)  # fmt: skip
"""base-files gives /etc/os-release (scanners name the distribution from it); libstdc++6 is a
library manylinux wheels may link against without bundling it (torch does: miner-vllm)."""
PYTHON_PLATFORM = "x86_64-manylinux_2_36"
"""Wheels must run on the base's glibc (bookworm: 2.36) and its CPython 3.11."""

BASE_ENV = (
    ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    ("PYTHONPATH", SITE_PACKAGES),
    ("PYTHONUNBUFFERED", "1"),
    # The root fs is read-only in a pod: bytecode is precompiled, never written at run time.
    ("PYTHONDONTWRITEBYTECODE", "1"),
    ("SSL_CERT_FILE", f"{SITE_PACKAGES}/certifi/cacert.pem"),
    ("LANG", "C.UTF-8"),
)


@dataclass(frozen=True)
class ImageSpec:
    name: str
    description: str
    package: str
    """The workspace package whose locked dependencies and wheels the image holds."""
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    requirements: str | None = None
    """A committed hash-pinned lock (relative to the repository) of third-party wheels,
    instead of `uv export` of `package` (vLLM is not in the workspace's lock)."""
    env: tuple[tuple[str, str], ...] = ()
    default: bool = True
    """Built without `--image`; the GPU image is many GB and built only when named."""

    @property
    def ref(self) -> str:
        return f"{REGISTRY}/{self.name}:{__version__}"

    @property
    def environment(self) -> tuple[tuple[str, str], ...]:
        return BASE_ENV + self.env


def _module(name: str) -> tuple[str, ...]:
    return (PYTHON, "-m", name)


IMAGES: dict[str, ImageSpec] = {
    spec.name: spec
    for spec in (
        ImageSpec(
            "operator",
            "the operator (kopf): reconciles MinerPools and Routes, admits attested miners",
            "teeroute-operator",
            _module("teeroute_operator"),
        ),
        ImageSpec(
            "gateway",
            "the OpenAI-compatible gateway; without --config it watches its cluster",
            "teeroute-gateway",
            (*_module("teeroute.cli"), "gateway", "serve"),
            ("--host", "0.0.0.0"),  # noqa: S104 - in its pod, on the pod's IP
        ),
        ImageSpec(
            "agent",
            "the enclave agent: evidence, sealing, receipts (settings from the environment)",
            "teeroute-enclave",
            _module("teeroute_enclave"),
        ),
        ImageSpec(
            "engine-sim",
            "the engine simulator (a CPU demo engine with vLLM's flags)",
            "teeroute-engine-sim",
            _module("teeroute_engine_sim"),
        ),
        ImageSpec(
            "miner-vllm",
            "vLLM from its PyPI wheels behind our entrypoint (GPU nodes only; about 9 GB)",
            "teeroute-miner",
            _module("teeroute_miner"),
            requirements="enclave-images/miner-vllm/requirements.lock",
            env=(("HOME", "/tmp"), ("HF_HOME", "/var/cache/engine")),  # noqa: S108 - in the pod
            default=False,
        ),
    )
}
DEFAULT_IMAGES = tuple(name for name, spec in IMAGES.items() if spec.default)


def repository_root() -> Path:
    """The checkout the images are built from (this file lies in enclave-images/builder)."""
    return Path(__file__).resolve().parents[4]
