"""Invalid MinerPools and Routes are refused at apply time, naming the field; the models
refuse the same ones (the operator never trusts what it cannot validate)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from teeroute.api import MinerPool, Route
from teeroute_sandbox.restclient import ApiError, KubeRest

from .cases import INVALID, Invalid, valid_pool, valid_route

API = "/apis/teeroute.dev/v1alpha1/namespaces"


def test_there_are_at_least_ten_distinct_invalid_cases() -> None:
    assert len({c.id for c in INVALID}) >= 10


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_models_refuse_what_the_apiserver_refuses(case: Invalid) -> None:
    model = MinerPool if case.base == "pool" else Route
    with pytest.raises(ValidationError):
        model.model_validate(case.body())


def test_models_accept_the_valid_objects() -> None:
    MinerPool.model_validate(valid_pool())
    Route.model_validate(valid_route())
    MinerPool.model_validate(sealed_relay_pool())


def sealed_relay_pool() -> dict[str, Any]:
    """A relay pool with a secret: the agent alone, its upstream's key released to it."""
    pool = valid_pool("relay")
    pool["spec"]["images"] = {"agent": "teeroute.dev/agent:0.1.0"}
    pool["spec"]["relay"] = {"url": "http://10.95.0.1:9000"}
    pool["spec"]["secrets"] = [
        {"name": "engine-api-key", "secretKeyRef": {"name": "provider", "key": "token"}},
        {"name": "extra-one", "secretKeyRef": {"name": "provider.v2", "key": "a_b-c.d"}},
    ]
    return pool


@pytest.mark.sandbox
@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_apiserver_rejects_invalid_objects_naming_the_field(
    kube: KubeRest, crds: None, namespace: str, case: Invalid
) -> None:
    plural = "minerpools" if case.base == "pool" else "routes"
    with pytest.raises(ApiError) as rejected:
        kube.post(f"{API}/{namespace}/{plural}", case.body())
    assert rejected.value.status == 422, rejected.value
    assert case.field in str(rejected.value)


@pytest.mark.sandbox
def test_apiserver_accepts_the_valid_objects_and_fills_defaults(
    kube: KubeRest, crds: None, namespace: str
) -> None:
    pool = kube.post(f"{API}/{namespace}/minerpools", valid_pool())
    assert pool["spec"]["attestation"] == {
        "allowedMeasurements": [],
        "minimumTcb": {},
        "debugForbidden": True,
        "maxEvidenceAge": "5m",
        "reattestationInterval": "1m",
        "tdx": {
            "rtmr0": [],
            "rtmr1": [],
            "rtmr2": [],
            "rtmr3": [],
            "mrConfigId": [],
            "mrOwner": [],
            "acceptedTcbStatuses": ["UpToDate"],
        },
        "allowUncheckedCollateral": False,  # TDX without Intel's collateral: not admitted
    }
    assert pool["spec"]["sealing"] == "allowed"
    assert pool["spec"]["paymentMethods"] == ["prepaid-credit"]
    assert pool["spec"]["pricing"]["currency"] == "USD"
    route = kube.post(f"{API}/{namespace}/routes", valid_route())
    assert route["spec"]["routing"]["sort"] == "price"


@pytest.mark.sandbox
def test_apiserver_accepts_a_relay_pool_with_secrets(
    kube: KubeRest, crds: None, namespace: str
) -> None:
    created = kube.post(f"{API}/{namespace}/minerpools", sealed_relay_pool())
    assert created["spec"]["relay"] == {"url": "http://10.95.0.1:9000"}
    assert [s["name"] for s in created["spec"]["secrets"]] == ["engine-api-key", "extra-one"]
    plain = kube.post(f"{API}/{namespace}/minerpools", valid_pool("plain"))
    assert plain["spec"]["secrets"] == []
