"""Every value in values.yaml is used by a template: changing it (to another valid value)
changes what the chart renders, in at least one of a few base configurations (some values
matter only when another is on, e.g. the PostgreSQL Secret only with ledger type
postgresql). Stronger than finding `.Values.x.y` in the template text: a value that is read
but has no effect fails too. A new value needs an entry in ALTERNATIVES (the test says so)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from teeroute.chart.generate import leaves
from teeroute.chart.values import Values
from tests.chart.helm import GATEWAY_KEY, ROOT_PEM, Helm, HelmFailed, preset_values

OTHER_KEY = base64.b64encode(hashlib.sha256(b"another key").digest()).decode()
TOLERATION = [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
PEER = [{"namespaceLabels": {"kubernetes.io/metadata.name": "monitoring"}}]
MAP = {"example.com/role": "teeroute"}

ALTERNATIVES: dict[str, Any] = {
    "fullnameOverride": "tr",
    "imagePullSecrets": ["registry-credentials"],
    "operator.image.repository": "registry.example/teeroute/operator",
    "operator.releaseKey.existingSecret": "other-release-key",
    "operator.gatewayKeys": [GATEWAY_KEY, OTHER_KEY],
    "operator.namespaces": ["miners"],
    "operator.external.schemes": ["https", "http"],
    "operator.external.hosts": ["*.miners.example"],
    "operator.tolerations": TOLERATION,
    "gateway.image.repository": "registry.example/teeroute/gateway",
    "gateway.operatorKey": OTHER_KEY,
    "gateway.keys.adminKeySha256": ["a" * 64],
    "gateway.keys.metricsTokenSha256": "b" * 64,
    "gateway.namespaces": ["miners"],
    "gateway.currency": "EUR",
    "gateway.ledger.type": "postgresql",
    "gateway.ledger.sqlite.size": "5Gi",
    "gateway.ledger.sqlite.storageClassName": "fast",
    "gateway.service.type": "NodePort",
    "gateway.tolerations": TOLERATION,
    "simulatedTee.rootPem": ROOT_PEM.replace("MIIB", "MIIC"),
    "trust.tdxCollateralConfigMap": "intel-pcs-collateral",
    "networkPolicy.gatewayFrom": PEER,
    "networkPolicy.metricsFrom": PEER,
    "serviceMonitor.interval": "60s",
}
BY_SUFFIX: dict[str, Any] = {
    ".tag": "9.9.9",
    ".pullPolicy": "Always",
    ".existingSecret": "other-secret",
    ".key": "other-key",
    ".cpu": "3",
    ".memory": "3Gi",
}

BASES: dict[str, tuple[str | None, list[dict[str, Any]]]] = {
    "kind": ("kind", preset_values("kind")),
    # The defaults, with what the validations ask for when a value turns a feature on.
    "defaults": (
        None,
        [
            *preset_values("aks"),
            {
                "operator": {"releaseKey": {"existingSecret": "release-key"}},
                "gateway": {
                    "ledger": {"postgresql": {"existingSecret": "db"}},
                    "redis": {"url": {"existingSecret": "redis"}},
                },
                "simulatedTee": {"rootPem": ROOT_PEM},
            },
        ],
    ),
    "aks": ("aks", preset_values("aks")),
    "aks-fixed-size": (
        "aks",
        [*preset_values("aks"), {"gateway": {"autoscaling": {"enabled": False}}}],
    ),
}


def alternative(path: str, default: Any) -> Any:
    if path in ALTERNATIVES:
        return ALTERNATIVES[path]
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, dict):
        return {**default, **MAP}
    for suffix, value in BY_SUFFIX.items():
        if path.endswith(suffix):
            return value
    raise KeyError(f"no alternative value for {path}: add one to ALTERNATIVES")


def nested(path: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return dict(out)


def _changes_render(helm: Helm, path: str, value: Any, base: dict[str, str]) -> bool:
    for name, (preset, values) in BASES.items():
        try:
            changed = helm.template(preset, *values, nested(path, value))
        except HelmFailed:
            continue
        if changed != base[name]:
            return True
    return False


def test_every_value_has_an_alternative() -> None:
    for path, default, _, _ in leaves(Values()):
        assert alternative(path, default) != default, path


def test_every_value_changes_the_render(helm: Helm) -> None:
    base = {name: helm.template(preset, *values) for name, (preset, values) in BASES.items()}
    unused = [
        path
        for path, default, _, _ in leaves(Values())
        if not _changes_render(helm, path, alternative(path, default), base)
    ]
    assert unused == [], f"values no template uses: {unused}"


@pytest.mark.parametrize("path", ["gateway.ledger.sqlite.size", "operator.metrics.token.key"])
def test_a_value_that_matters_only_with_another_is_found_used(helm: Helm, path: str) -> None:
    """The bases cover values that depend on others (here: persistence, a token Secret)."""
    default = next(d for p, d, _, _ in leaves(Values()) if p == path)
    base = {name: helm.template(preset, *values) for name, (preset, values) in BASES.items()}
    assert _changes_render(helm, path, alternative(path, default), base)
