"""Pool and Route status decisions (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from teeroute.api import MinerPool, Route
from teeroute_operator.conditions import set_condition
from teeroute_operator.routes import route_status
from teeroute_operator.status import Observed, pool_status

from ..cases import valid_pool, valid_route

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def pod(
    ready: bool = True, expires: str | None = None, uid: str = "", **status: Any
) -> dict[str, Any]:
    annotations = {"teeroute.dev/attestation-expires-at": expires} if expires else {}
    return {
        "metadata": {"annotations": annotations, "uid": uid},
        "status": {"conditions": [{"type": "Ready", "status": str(ready)}], **status},
    }


def pool(replicas: int = 2, **status: Any) -> MinerPool:
    body = valid_pool("p")
    body["spec"]["replicas"] = replicas
    body["metadata"]["generation"] = 4
    body["status"] = status
    return MinerPool.model_validate(body)


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_ready_when_every_desired_miner_is() -> None:
    status = pool_status(pool(), Observed(None, [pod(), pod()], NOW), {})
    assert (status["readyReplicas"], status["desiredReplicas"], status["observedGeneration"]) == (
        2,
        2,
        4,
    )
    assert conditions(status)["Ready"]["status"] == "True"


def test_attested_counts_only_ready_pods_the_operator_holds_a_lease_on() -> None:
    forged = "2099-01-01T00:00:00Z"  # a pod editor's annotation: not a lease
    pods = [
        pod(uid="a"),
        pod(uid="b", expires=forged),
        pod(ready=False, uid="c"),
        pod(uid="d"),
    ]
    seen = Observed(None, pods, NOW, attested=frozenset({"a", "c"}))
    assert pool_status(pool(4), seen, {})["attestedReplicas"] == 1


def test_unschedulable_pod_degrades_the_pool() -> None:
    stuck = pod(ready=False)
    stuck["status"]["conditions"].append(
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/7 nodes are available",
        }
    )
    status = pool_status(pool(1), Observed(None, [stuck], NOW), {})
    assert conditions(status)["Degraded"]["reason"] == "Unschedulable"
    assert conditions(status)["Ready"]["status"] == "False"


def test_crash_loop_degrades_the_pool() -> None:
    crashing = pod(
        ready=False,
        containerStatuses=[
            {
                "name": "engine",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            }
        ],
    )
    status = pool_status(pool(1), Observed(None, [crashing], NOW), {})
    assert conditions(status)["Degraded"]["reason"] == "CrashLoopBackOff"
    assert "engine" in conditions(status)["Degraded"]["message"]


def test_transition_time_is_kept_while_the_value_holds() -> None:
    first = set_condition([], "Ready", True, "A", "", "t1", 1)
    again = set_condition(first, "Ready", True, "B", "changed", "t2", 2)
    flipped = set_condition(again, "Ready", False, "C", "", "t3", 3)
    assert again[0]["lastTransitionTime"] == "t1"
    assert flipped[0]["lastTransitionTime"] == "t3"


def route_obj(**spec: Any) -> Route:
    body = valid_route("r", ("a", "b"))
    body["spec"].update(spec)
    return Route.model_validate(body)


def test_route_lists_every_backend_with_its_verdict() -> None:
    pools = {"a": pool(readyReplicas=1), "b": pool(readyReplicas=0)}
    status = route_status(route_obj(), pools, {}, NOW)
    assert status["eligibleBackends"] == 1
    assert [(b["pool"], b["eligible"], b["reason"]) for b in status["backends"]] == [
        ("a", True, ""),
        ("b", False, "NoReadyMiners"),
    ]
    assert conditions(status)["Ready"]["status"] == "True"


def test_route_without_pools_is_not_ready_and_says_why() -> None:
    status = route_status(route_obj(), {}, {}, NOW)
    ready = conditions(status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "PoolNotFound")
    assert "a: PoolNotFound" in ready["message"]


def test_route_selector_picks_pools_by_label() -> None:
    labelled = valid_pool("x")
    labelled["metadata"]["labels"] = {"family": "llama"}
    labelled["status"] = {"readyReplicas": 1}
    pools = {"x": MinerPool.model_validate(labelled), "y": pool(readyReplicas=1)}
    route = Route.model_validate(
        {
            **valid_route("r"),
            "spec": {
                "model": "m",
                "selector": {"matchLabels": {"family": "llama"}},
                "constraints": {"allowedTee": ["simulated"]},
            },
        }
    )
    assert [b["pool"] for b in route_status(route, pools, {}, NOW)["backends"]] == ["x"]


def external_pool() -> MinerPool:
    body = valid_pool("ext")
    for key in ("replicas", "images", "placement"):
        del body["spec"][key]
    body["spec"]["endpoints"] = [
        {"name": "a", "url": "https://a.example:8443"},
        {"name": "b", "url": "https://b.example:8443"},
    ]
    return MinerPool.model_validate(body)


def lease(name: str, url: str, seconds: int, **extra: str) -> dict[str, str]:
    expires = (NOW + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"name": name, "url": url, "expiresAt": expires, **extra}


def test_external_pool_counts_unexpired_leases_of_listed_endpoints_only() -> None:
    previous = {
        "endpoints": [
            lease("a", "https://a.example:8443", 30),
            lease("b", "https://old.example:8443", 30),  # its URL changed: not this endpoint
            lease("gone", "https://gone.example", 30),
        ]
    }
    status = pool_status(external_pool(), Observed(None, [], NOW), previous)
    assert status["attestedReplicas"] == 1 and status["desiredReplicas"] == 2
    ready = conditions(status)["Ready"]
    assert (ready["status"], ready["message"]) == ("False", "1/2 external endpoints attested")
    assert "endpoints" not in status  # the sweeper's field, never rewritten by reconcile


def test_external_pool_is_ready_when_every_endpoint_is_attested() -> None:
    previous = {
        "endpoints": [
            lease("a", "https://a.example:8443", 30),
            lease("b", "https://b.example:8443", 30),
        ]
    }
    status = pool_status(external_pool(), Observed(None, [], NOW), previous)
    assert conditions(status)["Ready"]["status"] == "True"


def test_external_pool_reports_expired_and_chip_changed_leases_as_not_attested() -> None:
    previous = {
        "endpoints": [
            lease("a", "https://a.example:8443", -1, failure="unreachable: timed out"),
            lease("b", "https://b.example:8443", 30, chipChanged="x -> y"),
        ]
    }
    status = pool_status(external_pool(), Observed(None, [], NOW), previous)
    assert status["attestedReplicas"] == 0
    assert status["lastAttestationFailure"] == "unreachable: timed out"
