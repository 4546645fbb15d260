"""Where one sandbox keeps its files. One place, so nothing else spells a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def component_kubeconfig(self) -> Path:
        """Credentials of the controller-manager, scheduler, kwok and the runner."""
        return self.pki / "components.kubeconfig"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def pods(self) -> Path:
        """The runner's per-pod files (volumes, pid files)."""
        return self.root / "pods"

    @property
    def images(self) -> Path:
        """Extra image -> command mappings for the runner (JSON), beside the built-in ones."""
        return self.root / "images.json"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pidfile(self, component: str) -> Path:
        return self.pids / f"{component}.pid"
