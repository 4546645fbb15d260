"""The simulated TEE's "hardware vendor" for the sandbox: a root CA kept in the sandbox's
state, a chip key per node of the simulated-TEE pool, and the objects that hand them out:

- Secret `teeroute-simulated-tee` in each miner namespace: `<node>.key` and `<node>.crt`,
  mounted by every simulated-TEE agent (a real TEE has its chip key fused in; here the
  cluster admin holds them all, which is why the simulated TEE protects nothing);
- `simulated-root.pem` in a trust directory, for an operator run as a local process, and a
  ConfigMap `teeroute-trust` in `teeroute-system` for the in-cluster one.

Idempotent: the root and chips are made once per sandbox and reused.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from teeroute.attestation import simulated
from teeroute_sandbox.nodepools import POOLS
from teeroute_sandbox.restclient import KubeRest

SECRET = "teeroute-simulated-tee"  # noqa: S105 - a Secret's name
TRUST_CONFIGMAP = "teeroute-trust"
OPERATOR_NAMESPACE = "teeroute-system"


def simulated_nodes() -> list[str]:
    return [n for pool in POOLS if pool.name == "kind-simtee" for n in pool.node_names]


class SimulatedVendor:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def trust_dir(self) -> Path:
        """A directory an operator can use as TEEROUTE_OPERATOR_TRUST_DIR."""
        return self.dir / "trust"

    def root_pem(self) -> bytes:
        self._ensure()
        return (self.dir / "root.crt").read_bytes()

    def chip_files(self) -> dict[str, bytes]:
        self._ensure()
        files = {}
        for node in simulated_nodes():
            files[f"{node}.key"] = (self.dir / "chips" / f"{node}.key").read_bytes()
            files[f"{node}.crt"] = (self.dir / "chips" / f"{node}.crt").read_bytes()
        return files

    def install(
        self,
        kube: KubeRest,
        namespaces: list[str],
        create_namespaces: bool = False,
        trust_configmap: bool = True,
    ) -> None:
        for namespace in namespaces:
            if create_namespaces:
                _ensure_namespace(kube, namespace)
            _apply(kube, _chip_secret(namespace, self.chip_files()))
        if trust_configmap:
            _ensure_namespace(kube, OPERATOR_NAMESPACE)
            _apply(kube, _trust_configmap(self.root_pem()))

    def _ensure(self) -> None:
        now = dt.datetime.now(dt.UTC)
        chips = self.dir / "chips"
        chips.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        if not (self.dir / "root.crt").exists():
            cert, key = simulated.new_root(now)
            _write(self.dir / "root.key", _key_pem(key))
            _write(self.dir / "root.crt", cert.public_bytes(serialization.Encoding.PEM))
        root = x509.load_pem_x509_certificate((self.dir / "root.crt").read_bytes())
        root_key = serialization.load_pem_private_key(
            (self.dir / "root.key").read_bytes(), password=None
        )
        assert isinstance(root_key, ec.EllipticCurvePrivateKey)  # noqa: S101 - we wrote it
        for node in simulated_nodes():
            if (chips / f"{node}.crt").exists():
                continue
            chip, chip_key = simulated.issue_chip(root, root_key, node, now)
            _write(chips / f"{node}.key", _key_pem(chip_key))
            _write(chips / f"{node}.crt", chip.public_bytes(serialization.Encoding.PEM))
        self.trust_dir.mkdir(exist_ok=True)
        trusted = self.trust_dir / "simulated-root.pem"
        if not trusted.exists():
            _write(trusted, (self.dir / "root.crt").read_bytes(), mode=0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


def _chip_secret(namespace: str, files: dict[str, bytes]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
    }


def _trust_configmap(root_pem: bytes) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": TRUST_CONFIGMAP, "namespace": OPERATOR_NAMESPACE},
        "data": {"simulated-root.pem": root_pem.decode()},
    }


def _ensure_namespace(kube: KubeRest, name: str) -> None:
    if kube.get_or_none(f"/api/v1/namespaces/{name}") is None:
        kube.post(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )


def _apply(kube: KubeRest, obj: dict[str, object]) -> None:
    meta = obj["metadata"]
    assert isinstance(meta, dict)  # noqa: S101 - built above
    plural = "secrets" if obj["kind"] == "Secret" else "configmaps"
    path = f"/api/v1/namespaces/{meta['namespace']}/{plural}/{meta['name']}"
    kube.patch(path, obj, kind="apply")
