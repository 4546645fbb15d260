"""Pure builders: pod status patches and node manifests."""

from __future__ import annotations

import ipaddress

from teeroute_sandbox import nodepools
from teeroute_sandbox.cluster import node_schedulable
from teeroute_sandbox.runner.status import pod_status_patch
from teeroute_sandbox.runner.supervisor import ContainerState

RUNNING = ContainerState("a", "img", "running", started_at="t0", ready=True)


def test_pod_ready_only_when_every_container_is() -> None:
    patch, ready = pod_status_patch(
        "u", [RUNNING, ContainerState("b", "img", "running")], None, "now", "Always"
    )
    assert not ready
    conditions = {c["type"]: c for c in patch["status"]["conditions"]}
    assert conditions["Ready"] == {"type": "Ready", "status": "False", "lastTransitionTime": "now"}


def test_transition_time_moves_only_on_change() -> None:
    patch, ready = pod_status_patch("u", [RUNNING], True, "later", "Always")
    assert ready
    assert all("lastTransitionTime" not in c for c in patch["status"]["conditions"])


def test_crash_loop_status_keeps_the_last_exit() -> None:
    state = ContainerState(
        "a",
        "img",
        "waiting",
        reason="CrashLoopBackOff",
        message="back-off",
        restart_count=2,
        last_exit_code=3,
        last_started_at="t0",
        last_finished_at="t1",
    )
    patch, _ = pod_status_patch("u", [state], False, "now", "Always")
    status = patch["status"]["containerStatuses"][0]
    assert status["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
    assert status["lastState"] == {
        "terminated": {"exitCode": 3, "reason": "Error", "startedAt": "t0", "finishedAt": "t1"}
    }
    assert status["restartCount"] == 2
    assert "phase" not in patch["status"]


def test_finished_pods_get_a_phase_by_restart_policy() -> None:
    done = ContainerState("a", "img", "terminated", exit_code=0)
    failed = ContainerState("a", "img", "terminated", exit_code=1)
    assert pod_status_patch("u", [done], None, "t", "Never")[0]["status"]["phase"] == "Succeeded"
    assert pod_status_patch("u", [failed], None, "t", "Never")[0]["status"]["phase"] == "Failed"
    assert "phase" not in pod_status_patch("u", [failed], None, "t", "OnFailure")[0]["status"]


def test_nodes_get_distinct_pod_ranges_inside_the_pod_cidr() -> None:
    nodes = nodepools.node_manifests("10.244.0.0/16", "v1.33.5")
    ranges = [ipaddress.ip_network(n["spec"]["podCIDR"]) for n in nodes]
    assert len(set(ranges)) == len(nodes) == sum(len(p.node_names) for p in nodepools.POOLS)
    assert all(r.subnet_of(ipaddress.ip_network("10.244.0.0/16")) for r in ranges)
    assert all(n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake" for n in nodes)
    assert len({n["status"]["nodeInfo"]["systemUUID"] for n in nodes}) == len(nodes)


def test_only_the_kind_pool_offers_the_simulated_tee() -> None:
    offering = [
        p.name for p in nodepools.POOLS if p.labels.get(nodepools.SIMULATED_TEE_LABEL) == "true"
    ]
    assert offering == ["kind-simtee"]


def test_gpu_pools_are_tainted_and_offer_one_gpu() -> None:
    for pool in (nodepools.AKS_CVM_GPU, nodepools.GKE_TDX_GPU):
        assert pool.taints and all(t["effect"] == "NoSchedule" for t in pool.taints)
        assert pool.allocatable["nvidia.com/gpu"] == "1"


def test_node_is_schedulable_once_ready_and_untainted() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    tainted = {
        **ready,
        "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
    }
    pool_taint = {**ready, "spec": {"taints": [{"key": "sku", "effect": "NoSchedule"}]}}
    assert node_schedulable(ready)
    assert not node_schedulable(tainted)
    assert node_schedulable(pool_taint)
    assert not node_schedulable({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
