"""Which pod events reach a reconcile or a sweep (podchanges.py): the operator's own
annotation writes do not; anything it reads from a pod does."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from teeroute_operator import builders
from teeroute_operator.podchanges import PodChanges


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
    ],
)
def test_anything_the_operator_reads_is_relevant(edit: Any) -> None:
    changes, pod = PodChanges(), _pod()
    changes.relevant("ADDED", pod)
    edit(pod)
    assert changes.relevant("MODIFIED", pod)
    assert not changes.relevant("MODIFIED", pod)  # once


def test_deletion_is_relevant_and_forgets_the_pod() -> None:
    changes, pod = PodChanges(), _pod()
    changes.relevant("ADDED", pod)
    assert changes.relevant("DELETED", pod)
    assert len(changes) == 0
    assert changes.relevant("ADDED", pod)  # a pod seen again after its deletion counts


def test_each_pod_is_tracked_by_its_own_uid() -> None:
    changes, pod = PodChanges(), _pod()
    other = copy.deepcopy(pod)
    other["metadata"]["uid"] = "u2"
    assert changes.relevant("ADDED", pod)
    assert changes.relevant("ADDED", other)  # same contents, another pod
    assert len(changes) == 2
