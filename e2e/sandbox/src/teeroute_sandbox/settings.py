"""Typed, documented settings of one sandbox instance.

Several sandboxes can run at once (each in its own network namespace), told apart by
`name`. Environment variables override the defaults so CI and developers can move the
cache and state without editing code.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


def default_cache_dir() -> Path:
    """Where built binaries are kept between runs (`TEEROUTE_CACHE_DIR` overrides)."""
    explicit = os.environ.get("TEEROUTE_CACHE_DIR")
    return Path(explicit) if explicit else _xdg("XDG_CACHE_HOME", ".cache") / "teeroute"


def default_state_root() -> Path:
    """Where running sandboxes keep their state (`TEEROUTE_SANDBOX_STATE` overrides)."""
    explicit = os.environ.get("TEEROUTE_SANDBOX_STATE")
    return Path(explicit) if explicit else _xdg("XDG_STATE_HOME", ".local/state") / "teeroute"


def default_image_store() -> Path:
    """The OCI image layout the runner takes images from (`TEEROUTE_IMAGE_STORE` overrides;
    `teeroute images build` writes it)."""
    explicit = os.environ.get("TEEROUTE_IMAGE_STORE")
    return Path(explicit) if explicit else default_cache_dir() / "images" / "oci"


@dataclass(frozen=True)
class SandboxSettings:
    name: str = "teeroute"
    """Instance name; also the name of its network namespace (`ip netns list` shows it)."""

    cache_dir: Path = field(default_factory=default_cache_dir)
    """Binary cache: `<cache_dir>/bin/<component>-<version>-<hash>/`. Emptying it forces a
    rebuild from the Go module proxy (module and build caches of Go itself are kept)."""

    image_store: Path = field(default_factory=default_image_store)
    """The OCI image layout whose images the runner runs from their own root filesystem."""

    state_root: Path = field(default_factory=default_state_root)
    """Parent of each instance's state directory (certificates, kubeconfig, etcd, logs)."""

    service_cidr: str = "10.96.0.0/16"
    """ClusterIP range. Its first address (the `kubernetes` Service) is also put on the
    namespace's loopback, and the apiserver listens on :443, so in-cluster clients reach it
    through KUBERNETES_SERVICE_HOST without kube-proxy."""

    pod_cidr: str = "10.244.0.0/16"
    """Pod addresses; each node gets a /24 of it. Routed only inside the namespace."""

    advertise_address: str = "10.95.0.1"
    """The apiserver's own (non-loopback) address, which the `kubernetes` Endpoints list;
    loopback addresses are rejected there."""

    ready_timeout_s: float = 120.0
    """How long one component may take to become ready before `up` fails."""

    @property
    def netns(self) -> str:
        return self.name

    @property
    def state_dir(self) -> Path:
        return self.state_root / "sandbox" / self.name

    @property
    def rootfs_cache(self) -> Path:
        """Unpacked image root filesystems, one directory per manifest digest."""
        return self.cache_dir / "rootfs"

    @property
    def kubernetes_service_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    @property
    def apiserver_url(self) -> str:
        return f"https://{self.advertise_address}:443"
