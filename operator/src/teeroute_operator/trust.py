"""Trust beyond the built-in vendor roots, from a directory the chart mounts from a ConfigMap:

    simulated-root.pem        the simulated TEE's root CA (only used where simulated is allowed)
    tdx/                      Intel PCS collateral (see `tdx.Collateral.from_directory`)

Re-read when a file changes, so rotating the ConfigMap needs no restart.
"""

from __future__ import annotations

from pathlib import Path

from teeroute.attestation import tdx
from teeroute.attestation.evidence import Trust

SIMULATED_ROOT = "simulated-root.pem"
TDX_DIR = "tdx"


class TrustStore:
    def __init__(self, directory: Path | None, allow_simulated: bool) -> None:
        self._dir = directory
        self._allow_simulated = allow_simulated
        self._stamp: tuple[float, ...] | None = None
        self._trust = Trust()

    @property
    def allow_simulated(self) -> bool:
        return self._allow_simulated

    def current(self) -> Trust:
        stamp = self._stamp_now()
        if stamp != self._stamp:
            self._trust = self._load()
            self._stamp = stamp
        return self._trust

    def _files(self) -> list[Path]:
        if self._dir is None:
            return []
        return [
            self._dir / SIMULATED_ROOT,
            *(self._dir / TDX_DIR / n for n in tdx.COLLATERAL_FILES),
        ]

    def _stamp_now(self) -> tuple[float, ...]:
        stamps = []
        for path in self._files():
            try:
                stamps.append(path.stat().st_mtime)
            except OSError:
                stamps.append(-1.0)
        return tuple(stamps)

    def _load(self) -> Trust:
        if self._dir is None:
            return Trust()
        root = self._dir / SIMULATED_ROOT
        collateral_dir = self._dir / TDX_DIR
        return Trust(
            simulated_root_pem=(
                root.read_bytes() if self._allow_simulated and root.is_file() else None
            ),
            tdx_collateral=(
                tdx.Collateral.from_directory(collateral_dir) if collateral_dir.is_dir() else None
            ),
        )
