"""Rendering charts/teeroute with the helm built from the Go module proxy (shared by the
chart tests): the presets, the values every install must add, and the objects rendered."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "teeroute"
PRESETS = ("kind", "aks", "gke")
NAMESPACE = "teeroute-system"

# Public keys and a root certificate stand-in: what an install must add to any preset. Fixed
# bytes (not random), so two renders can be compared.
OPERATOR_KEY = base64.b64encode(hashlib.sha256(b"operator").digest()).decode()
GATEWAY_KEY = base64.b64encode(hashlib.sha256(b"gateway").digest()).decode()
ROOT_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
REQUIRED: dict[str, Any] = {
    "gateway": {"operatorKey": OPERATOR_KEY},
    "operator": {"gatewayKeys": [GATEWAY_KEY]},
}


class HelmFailed(AssertionError):
    """helm exited non-zero; the message is its stderr."""


@dataclass
class Helm:
    binary: Path
    work: Path
    counter: list[int] = field(default_factory=lambda: [0])

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise HelmFailed(done.stderr.strip() or done.stdout.strip())
        return done.stdout

    def values_file(self, values: dict[str, Any]) -> Path:
        self.counter[0] += 1
        path = self.work / f"values-{self.counter[0]}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    def value_args(self, preset: str | None, *overrides: dict[str, Any]) -> list[str]:
        args = ["-f", str(CHART / f"values-{preset}.yaml")] if preset else []
        for values in overrides:
            args += ["-f", str(self.values_file(values))]
        return args

    def template(
        self, preset: str | None, *overrides: dict[str, Any], namespace: str = NAMESPACE
    ) -> str:
        return self.run(
            "template",
            "teeroute",
            str(CHART),
            "-n",
            namespace,
            *self.value_args(preset, *overrides),
        )

    def objects(
        self, preset: str | None, *overrides: dict[str, Any], namespace: str = NAMESPACE
    ) -> list[dict[str, Any]]:
        rendered = self.template(preset, *overrides, namespace=namespace)
        return [o for o in yaml.safe_load_all(rendered) if o]


def preset_values(preset: str) -> list[dict[str, Any]]:
    """What an install of `preset` adds: the public keys, and the simulated root (kind)."""
    extra = [REQUIRED]
    if preset == "kind":
        extra.append({"simulatedTee": {"rootPem": ROOT_PEM}})
    return extra


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]
