"""Valid objects and a table of invalid ones, shared by the apiserver tests (CRD schema and
CEL) and the model tests (pydantic), so both are held to the same rules."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


def valid_pool(name: str = "pool") -> Obj:
    return {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "MinerPool",
        "metadata": {"name": name},
        "spec": {
            "models": [{"name": "meta-llama/Llama-3.1-8B-Instruct"}],
            "tee": {"type": "simulated"},
            "placement": {"profile": "kind"},
            "replicas": 1,
            "images": {
                "agent": "teeroute.dev/agent:0.1.0",
                "engine": "teeroute.dev/engine-sim:0.1.0",
            },
            "pricing": {"inputPerMillion": "0.10", "outputPerMillion": "0.20"},
        },
    }


def valid_route(name: str = "route", pools: tuple[str, ...] = ("pool",)) -> Obj:
    return {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": name},
        "spec": {
            "model": "llama",
            "backends": [{"pool": p} for p in pools],
            "constraints": {"allowedTee": ["simulated"]},
        },
    }


@dataclass(frozen=True)
class Invalid:
    id: str
    base: str  # "pool" or "route"
    change: tuple[tuple[str, Any], ...]  # (dotted path in spec, value; None deletes)
    field: str  # what the apiserver's message must name

    def body(self) -> Obj:
        obj = valid_pool("bad") if self.base == "pool" else valid_route("bad")
        spec = copy.deepcopy(obj["spec"])
        for path, value in self.change:
            _set(spec, path, value)
        return {**obj, "spec": spec}


def _set(spec: Obj, path: str, value: Any) -> None:
    keys = path.split(".")
    node: Any = spec
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    last = keys[-1]
    if value is None:
        node.pop(last, None)
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


ENDPOINTS = [{"name": "m1", "url": "https://miner.example:8443"}]
INVALID = [
    Invalid(
        "negative-price",
        "pool",
        (("pricing.inputPerMillion", "-1"),),
        "spec.pricing.inputPerMillion",
    ),
    Invalid(
        "price-not-a-number",
        "pool",
        (("pricing.outputPerMillion", "cheap"),),
        "spec.pricing.outputPerMillion",
    ),
    Invalid("unknown-tee", "pool", (("tee.type", "sgx"),), "spec.tee.type"),
    Invalid("negative-replicas", "pool", (("replicas", -1),), "spec.replicas"),
    Invalid(
        "endpoints-and-replicas",
        "pool",
        (("images", None), ("placement", None), ("endpoints", ENDPOINTS)),
        "spec.replicas",
    ),
    Invalid(
        "endpoints-and-images",
        "pool",
        (("replicas", None), ("placement", None), ("endpoints", ENDPOINTS)),
        "spec",
    ),
    Invalid("neither-images-nor-endpoints", "pool", (("images", None),), "spec"),
    Invalid("empty-model-name", "pool", (("models", [{"name": ""}]),), "spec.models[0].name"),
    Invalid("no-models", "pool", (("models", []),), "spec.models"),
    Invalid("unknown-profile", "pool", (("placement.profile", "eks"),), "spec.placement.profile"),
    Invalid("simulated-tee-on-aks", "pool", (("placement.profile", "aks"),), "spec.tee.type"),
    Invalid(
        "gpu-required-without-gpus",
        "pool",
        (("tee.gpu", {"required": True}),),
        "spec.resources.gpus",
    ),
    Invalid(
        "reattest-slower-than-expiry",
        "pool",
        (("attestation", {"maxEvidenceAge": "1m", "reattestationInterval": "5m"}),),
        "spec.attestation.reattestationInterval",
    ),
    Invalid(
        "bad-duration",
        "pool",
        (("attestation", {"maxEvidenceAge": "5 minutes"}),),
        "spec.attestation.maxEvidenceAge",
    ),
    Invalid(
        "bad-measurement",
        "pool",
        (("attestation", {"allowedMeasurements": ["abc"]}),),
        "spec.attestation.allowedMeasurements[0]",
    ),
    Invalid("lowercase-currency", "pool", (("pricing.currency", "usd"),), "spec.pricing.currency"),
    Invalid(
        "unknown-payment-method", "pool", (("paymentMethods", ["cash"]),), "spec.paymentMethods[0]"
    ),
    Invalid(
        "endpoint-not-a-url",
        "pool",
        (
            ("images", None),
            ("placement", None),
            ("replicas", None),
            ("endpoints", [{"name": "m", "url": "miner:80"}]),
        ),
        "spec.endpoints[0].url",
    ),
    Invalid(
        "secret-name-not-a-label",
        "pool",
        (("secrets", [{"name": "Engine_Key", "secretKeyRef": {"name": "s", "key": "k"}}]),),
        "spec.secrets[0].name",
    ),
    Invalid(
        "secret-name-too-long",
        "pool",
        (("secrets", [{"name": "a" * 64, "secretKeyRef": {"name": "s", "key": "k"}}]),),
        "spec.secrets[0].name",
    ),
    Invalid(
        "secret-listed-twice",
        "pool",
        (
            (
                "secrets",
                [
                    {"name": "engine-api-key", "secretKeyRef": {"name": "a", "key": "k"}},
                    {"name": "engine-api-key", "secretKeyRef": {"name": "b", "key": "k"}},
                ],
            ),
        ),
        "spec.secrets",
    ),
    Invalid(
        "secret-without-ref",
        "pool",
        (("secrets", [{"name": "engine-api-key"}]),),
        "spec.secrets[0].secretKeyRef",
    ),
    Invalid(
        "secret-bad-key",
        "pool",
        (("secrets", [{"name": "k", "secretKeyRef": {"name": "s", "key": "a key"}}]),),
        "spec.secrets[0].secretKeyRef.key",
    ),
    Invalid(
        "relay-and-engine",
        "pool",
        (("relay", {"url": "https://api.provider.example"}),),
        "spec.images.engine",
    ),
    Invalid("no-engine-without-relay", "pool", (("images.engine", None),), "spec.images.engine"),
    Invalid(
        "relay-not-a-url",
        "pool",
        (("images.engine", None), ("relay", {"url": "api.provider.example"})),
        "spec.relay.url",
    ),
    Invalid(
        "relay-for-external-endpoints",
        "pool",
        (
            ("images", None),
            ("placement", None),
            ("replicas", None),
            ("endpoints", ENDPOINTS),
            ("relay", {"url": "https://api.provider.example"}),
        ),
        "spec.relay",
    ),
    Invalid(
        "route-backends-and-selector", "route", (("selector", {"matchLabels": {"a": "b"}}),), "spec"
    ),
    Invalid(
        "route-duplicate-pool",
        "route",
        (("backends", [{"pool": "p"}, {"pool": "p"}]),),
        "spec.backends",
    ),
    Invalid(
        "route-unknown-tee",
        "route",
        (("constraints.allowedTee", ["sgx"]),),
        "spec.constraints.allowedTee[0]",
    ),
    Invalid("route-empty-model", "route", (("model", ""),), "spec.model"),
    Invalid("route-unknown-sort", "route", (("routing", {"sort": "random"}),), "spec.routing.sort"),
]
