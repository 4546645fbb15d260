"""Which pods are challenged, under which policy, and which are listed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from teeroute import admission
from teeroute.api.minerpool import MinerPool
from teeroute_operator import admit

from ..cases import valid_pool

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def pool(tee: str = "simulated", **attestation: Any) -> MinerPool:
    body = valid_pool("p")
    body["spec"]["tee"] = {"type": tee}
    if tee != "simulated":
        body["spec"]["placement"] = {"profile": "aks" if tee == "sev-snp" else "gke"}
    body["spec"]["attestation"] = attestation
    body["metadata"]["namespace"] = "m"
    return MinerPool.model_validate(body)


def test_simulated_is_accepted_only_where_the_operator_allows_it() -> None:
    assert admit.pool_policy(pool(), allow_simulated=False).allowed_tee == frozenset()
    assert admit.pool_policy(pool(), allow_simulated=True).allowed_tee == {"simulated"}
    assert admit.pool_policy(pool("sev-snp"), allow_simulated=True).allowed_tee == {"sev-snp"}
    assert admit.pool_policy(pool("tdx"), allow_simulated=False).allowed_tee == {"tdx"}


def test_policy_follows_the_pool_spec() -> None:
    policy = admit.pool_policy(
        pool(
            allowedMeasurements=["ab" * 48],
            minimumTcb={"snp": 3},
            debugForbidden=False,
            maxEvidenceAge="90s",
            reattestationInterval="30s",
        ),
        allow_simulated=True,
    )
    assert policy.allowed_measurements == {"ab" * 48}
    assert policy.minimum_tcb == {"snp": 3}
    assert policy.debug_forbidden is False
    assert policy.max_age == dt.timedelta(seconds=90)
    assert admit.interval(pool(maxEvidenceAge="90s", reattestationInterval="30s")) == (
        dt.timedelta(seconds=30)
    )


def pod(name: str = "a", ip: str | None = "10.0.0.1", ready: bool = True, **extra: Any) -> Any:
    annotations = extra.pop("annotations", {})
    return {
        "metadata": {"name": name, "uid": name, "annotations": annotations, **extra},
        "spec": {"nodeName": "n1"},
        "status": {
            "phase": extra.pop("phase", "Running"),
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (pod(), True),
        (pod(ready=False), False),
        (pod(ip=None), False),
        (pod(deletionTimestamp="2026-11-24T12:00:00Z"), False),
    ],
)
def test_only_ready_running_pods_with_an_ip_are_challenged(candidate: Any, expected: bool) -> None:
    assert admit.challengeable(candidate) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        ("a=abc", {"a": "abc"}),
        ("a=abc, b = def", {"a": "abc", "b": "def"}),
        ("junk,a=1", {"a": "1"}),
    ],
)
def test_readmit_annotation_names_endpoint_and_chip(raw: str, expected: dict[str, str]) -> None:
    assert admit.readmit_map({admission.READMIT: raw} if raw else {}) == expected
