"""Which events of pods and children reach a reconcile or a sweep (changes.py): the
operator's own annotation writes and children's status counts do not; anything it reads
does."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from teeroute_operator import builders
from teeroute_operator.changes import ChildChanges, Need, PodChanges, PoolChanges


def _pod() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "llama-abc",
            "uid": "u1",
            "labels": {builders.POOL_LABEL: "llama", "pod-template-hash": "h1"},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "llama-h1", "uid": "rs1", "controller": True}
            ],
            "annotations": {"teeroute.dev/attestation-expires-at": "2026-12-05T08:00:00Z"},
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "agent", "image": "agent:1"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_the_operators_own_annotation_write_is_not_relevant() -> None:
    changes, pod = PodChanges(), _pod()
    assert changes.relevant(None, pod)  # first seen (the initial list)
    refreshed = copy.deepcopy(pod)
    refreshed["metadata"]["annotations"]["teeroute.dev/attestation-expires-at"] = "later"
    refreshed["metadata"]["resourceVersion"] = "2"
    assert not changes.relevant("MODIFIED", refreshed)
    assert not changes.relevant("MODIFIED", refreshed)


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p["status"]["conditions"][0].update(status="False"),
        lambda p: p["status"].update(podIP="10.0.0.6"),
        lambda p: p["status"].update(phase="Failed"),
        lambda p: p["metadata"].update(deletionTimestamp="2026-12-05T08:00:00Z"),
        lambda p: p["spec"]["containers"][0].update(image="evil:1"),
        lambda p: p["metadata"]["labels"].update({"pod-template-hash": "h2"}),
        lambda p: p["metadata"]["ownerReferences"][0].update(uid="rs2"),
        lambda p: p["metadata"].update(ownerReferences=[]),
        lambda p: p["spec"].update(initContainers=[{"name": "x", "image": "x:1"}]),
        lambda p: p["spec"].update(nodeName="n2"),
        lambda p: p["status"]["conditions"].append(
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        ),
        lambda p: p["status"].update(
            containerStatuses=[
                {"name": "agent", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]
        ),
    ],
    ids=[
        "unready",
        "new-ip",
        "failed",
        "terminating",
        "image",
        "template-hash",
        "owner",
        "orphaned",
        "init-container",
        "node",
        "unschedulable",
        "crash-loop",
    ],
)
def test_anything_the_operator_reads_is_relevant(edit: Any) -> None:
    changes, pod = PodChanges(), _pod()
    changes.relevant("ADDED", pod)
    edit(pod)
    assert changes.relevant("MODIFIED", pod)
    assert not changes.relevant("MODIFIED", pod)  # once


def _starting() -> dict[str, Any]:
    """A pod just created: pending, not yet on a node."""
    pod = _pod()
    pod["spec"].pop("nodeName")
    pod["status"] = {"phase": "Pending"}
    return pod


def test_a_pod_coming_up_wakes_the_sweeper_only_once_it_can_be_challenged() -> None:
    """Every step of a pod's start is the status's business; only the last one (Ready, with
    an IP) is the sweeper's, and then again when it stops being ready."""
    changes, pod = PodChanges(), _starting()
    seen = [changes.seen("ADDED", pod)]
    pod["spec"]["nodeName"] = "n1"
    seen.append(changes.seen("MODIFIED", pod))
    pod["status"] = {"phase": "Running", "podIP": "10.0.0.5", "conditions": []}
    seen.append(changes.seen("MODIFIED", pod))
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    seen.append(changes.seen("MODIFIED", pod))
    assert [(c.status, c.sweep) for c in seen] == [
        (True, False),
        (True, False),
        (True, False),
        (True, True),
    ]
    pod["status"]["podIP"] = "10.0.0.9"  # still challengeable, at another address
    assert changes.seen("MODIFIED", pod).sweep
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert changes.seen("MODIFIED", pod).sweep  # what it was admitted for is gone
    pod["status"]["phase"] = "Failed"  # not challengeable before or after: status only
    failed = changes.seen("MODIFIED", pod)
    assert (failed.status, failed.sweep) == (True, False)


def test_a_deleted_pod_wakes_the_sweeper_only_if_it_could_be_challenged() -> None:
    changes = PodChanges()
    ready, starting = _pod(), _starting()
    starting["metadata"]["name"] = "llama-def"
    changes.seen("ADDED", ready)
    changes.seen("ADDED", starting)
    assert changes.seen("DELETED", ready).sweep
    assert not changes.seen("DELETED", starting).sweep
    assert changes.seen("DELETED", starting).status


def test_deletion_is_relevant_and_forgets_the_pod() -> None:
    changes, pod = PodChanges(), _pod()
    changes.relevant("ADDED", pod)
    assert changes.relevant("DELETED", pod)
    assert len(changes) == 0
    assert changes.relevant("ADDED", pod)  # a pod seen again after its deletion counts


def test_each_pod_is_tracked_by_its_own_name_and_a_new_pod_of_that_name_counts() -> None:
    changes, pod = PodChanges(), _pod()
    other = copy.deepcopy(pod)
    other["metadata"]["name"] = "llama-def"
    assert changes.relevant("ADDED", pod)
    assert changes.relevant("ADDED", other)  # same contents, another pod
    assert len(changes) == 2
    again = copy.deepcopy(pod)
    again["metadata"]["uid"] = "u9"  # deleted and made again under the same name, unseen
    assert changes.relevant("MODIFIED", again)


def test_a_made_up_deletion_with_only_a_name_forgets_the_pod() -> None:
    changes, pod = PodChanges(), _pod()
    pod["metadata"]["namespace"] = "m"
    changes.relevant("ADDED", pod)
    tombstone = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "llama-abc", "namespace": "m"},
    }
    assert changes.pool_of("m", "llama-abc") == "llama"  # where the tombstone's pod was
    assert changes.relevant("DELETED", tombstone)
    assert len(changes) == 0
    assert changes.pool_of("m", "llama-abc") is None


def _deployment() -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {
            "uid": "d1",
            "generation": 1,
            "labels": {builders.POOL_LABEL: "llama"},
            "ownerReferences": [{"kind": "MinerPool", "uid": "p1", "controller": True}],
        },
        "spec": {"replicas": 2},
        "status": {"replicas": 0},
    }


def test_a_spec_or_metadata_change_or_a_deletion_repairs_the_children() -> None:
    changes, obj = ChildChanges(), _deployment()
    changes.need("ADDED", "Deployment", obj)
    obj["metadata"]["generation"] = 2  # someone edited the spec
    assert changes.need("MODIFIED", "Deployment", obj) is Need.CHILDREN
    obj["metadata"]["labels"] = {}  # or took the pool's label off
    assert changes.need("MODIFIED", "Deployment", obj) is Need.CHILDREN
    obj["metadata"]["ownerReferences"] = []
    assert changes.need("MODIFIED", "Deployment", obj) is Need.CHILDREN
    assert changes.need("DELETED", "Deployment", obj) is Need.CHILDREN
    assert len(changes) == 0


def test_a_deployments_status_refreshes_the_pools_status_only() -> None:
    changes, obj = ChildChanges(), _deployment()
    changes.need("ADDED", "Deployment", obj)
    obj["status"] = {"replicas": 2, "readyReplicas": 1}
    assert changes.need("MODIFIED", "Deployment", obj) is Need.STATUS
    obj["metadata"]["resourceVersion"] = "9"
    assert changes.need("MODIFIED", "Deployment", obj) is Need.NOTHING


def test_other_childrens_status_counts_ask_nothing() -> None:
    changes = ChildChanges()
    pdb = {"kind": "PodDisruptionBudget", "metadata": {"uid": "b1", "generation": 1}}
    changes.need("ADDED", "PodDisruptionBudget", pdb)
    pdb["status"] = {"currentHealthy": 3}
    assert changes.need("MODIFIED", "PodDisruptionBudget", pdb) is Need.NOTHING


def test_a_service_without_generation_is_compared_by_its_spec() -> None:
    changes = ChildChanges()
    service = {"kind": "Service", "metadata": {"uid": "s1"}, "spec": {"ports": [{"port": 80}]}}
    changes.need("ADDED", "Service", service)
    assert changes.need("MODIFIED", "Service", service) is Need.NOTHING
    service["spec"]["ports"][0]["port"] = 81
    assert changes.need("MODIFIED", "Service", service) is Need.CHILDREN


@pytest.mark.parametrize("event_type", ["ADDED", None])
def test_a_new_child_is_not_repaired_again_only_a_deployment_refreshes_the_status(
    event_type: str | None,
) -> None:
    """A child first seen is one the pool's reconcile just applied, or one kopf listed at
    start-up (when every pool is reconciled in full): repairing it again is reads for
    nothing. A new Deployment's status is the pool's to show."""
    changes = ChildChanges()
    assert changes.need(event_type, "Deployment", _deployment()) is Need.STATUS
    for kind, uid in (("Service", "s1"), ("PodDisruptionBudget", "b1"), ("NetworkPolicy", "n1")):
        child = {"kind": kind, "metadata": {"uid": uid, "generation": 1}, "spec": {}}
        assert changes.need(event_type, kind, child) is Need.NOTHING
    deleted = {"kind": "Service", "metadata": {"uid": "s1", "generation": 1}, "spec": {}}
    assert changes.need("DELETED", "Service", deleted) is Need.CHILDREN
    # made again by the repair: new once more, and not repaired a second time
    assert changes.need("ADDED", "Service", deleted) is Need.NOTHING


def _pool() -> dict[str, Any]:
    return {
        "metadata": {
            "uid": "p1",
            "generation": 1,
            "labels": {"tier": "gold"},
            "annotations": {"teeroute.dev/last-handled-configuration": "{}"},
        },
        "spec": {"tee": {"type": "sev-snp"}},
        "status": {"readyReplicas": 1, "attestedReplicas": 0, "conditions": []},
    }


def test_routes_see_a_pools_spec_labels_counts_and_going_only() -> None:
    changes, pool = PoolChanges(), _pool()
    assert changes.relevant(None, pool)  # listed at start-up
    pool["metadata"]["annotations"]["teeroute.dev/last-handled-configuration"] = '{"a": 1}'
    pool["status"]["conditions"] = [{"type": "Ready", "message": "1/2 miners ready"}]
    pool["status"]["lastAttestationFailure"] = "evidence.signature: bad"
    assert not changes.relevant("MODIFIED", pool)
    for change in (
        lambda p: p["status"].update(attestedReplicas=1),
        lambda p: p["status"].update(readyReplicas=2),
        lambda p: p["metadata"].update(generation=2),  # pricing, TEE type ...
        lambda p: p["metadata"]["labels"].update(tier="silver"),
        lambda p: p["metadata"].update(deletionTimestamp="2026-12-05T00:00:00Z"),
    ):
        change(pool)
        assert changes.relevant("MODIFIED", pool)
        assert not changes.relevant("MODIFIED", pool)
    assert changes.relevant("DELETED", pool) and len(changes) == 0
