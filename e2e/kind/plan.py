"""What e2e/kind/up.sh needs that shell does badly, as small commands (no cluster access):

    python e2e/kind/plan.py images                    the image references to load into kind
    python e2e/kind/plan.py examples                  the example manifests to apply
    python e2e/kind/plan.py simulated-tee NAMESPACE DIR NODE...
                                                      a simulated TEE root (kept in DIR) and a
                                                      chip per node; prints the miners' Secret

The image references come from the same files CI uses: the chart's images at its appVersion
(charts/teeroute) and the images of the example MinerPools up.sh applies (e2e/examples), so the
kind path loads exactly what the chart and the examples will ask the kubelet for.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from teeroute.attestation import simulated

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "teeroute"
VALUES = CHART / "values-kind.yaml"
EXAMPLES = ("minerpool-kind.yaml", "route.yaml")
"""The examples up.sh applies (the other pools need AKS or GKE nodes)."""
SECRET = "teeroute-simulated-tee"  # noqa: S105 - a Secret's name, as the operator mounts it


def chart_images() -> list[str]:
    """operator and gateway at the chart's appVersion, as its templates name them."""
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    refs = []
    for component in ("operator", "gateway"):
        image = values[component]["image"]
        refs.append(f"{image['repository']}:{image['tag'] or version}")
    return refs


def example_images() -> list[str]:
    refs: list[str] = []
    for name in EXAMPLES:
        for doc in yaml.safe_load_all((ROOT / "e2e" / "examples" / name).read_text()):
            images = (doc or {}).get("spec", {}).get("images") or {}
            refs += [images[k] for k in ("agent", "engine") if images.get(k)]
    return refs


def images() -> list[str]:
    return list(dict.fromkeys(chart_images() + example_images()))


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def simulated_tee(directory: Path, nodes: list[str]) -> dict[str, bytes]:
    """The root (kept in `directory`, made once) and a chip per node: the Secret's files."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = dt.datetime.now(dt.UTC)
    if not (directory / "root.crt").exists():
        cert, key = simulated.new_root(now)
        (directory / "root.key").write_bytes(_pem(key))
        (directory / "root.key").chmod(0o600)
        (directory / "root.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    root = x509.load_pem_x509_certificate((directory / "root.crt").read_bytes())
    root_key = serialization.load_pem_private_key((directory / "root.key").read_bytes(), None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)  # noqa: S101 - we wrote it
    files = {}
    for node in nodes:
        key_file, crt_file = directory / f"{node}.key", directory / f"{node}.crt"
        if not crt_file.exists():  # a node keeps its chip across runs, as hardware does
            chip, chip_key = simulated.issue_chip(root, root_key, node, now)
            key_file.write_bytes(_pem(chip_key))
            key_file.chmod(0o600)
            crt_file.write_bytes(chip.public_bytes(serialization.Encoding.PEM))
        files[key_file.name] = key_file.read_bytes()
        files[crt_file.name] = crt_file.read_bytes()
    return files


def chip_secret(namespace: str, files: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": namespace},
        "type": "Opaque",
        "data": {name: base64.b64encode(data).decode() for name, data in files.items()},
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["images"]:
        print("\n".join(images()))
        return 0
    if argv[:1] == ["examples"]:
        print("\n".join(str(Path("e2e") / "examples" / name) for name in EXAMPLES))
        return 0
    if argv[:1] == ["simulated-tee"] and len(argv) >= 4:
        namespace, directory, nodes = argv[1], Path(argv[2]), argv[3:]
        print(json.dumps(chip_secret(namespace, simulated_tee(directory, nodes))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
