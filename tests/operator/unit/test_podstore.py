"""The operator's in-memory pods (podstore.py): exactly what the watch reported, by pool,
with everything the operator reads from a pod; no read before the watch has listed."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from teeroute_operator import admit, builders, changes, status
from teeroute_operator.podstore import PodStore, slim

Obj = dict[str, Any]


def _pod(name: str = "llama-abc", pool: str = "llama", uid: str = "u1") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "miners",
            "uid": uid,
            "resourceVersion": "7",
            "labels": {builders.POOL_LABEL: pool, "pod-template-hash": "h1"},
            "annotations": {"teeroute.dev/attestation-failure": "evidence.signature: bad"},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "llama-h1", "uid": "rs1", "controller": True}
            ],
            "managedFields": [{"manager": "kwok", "fieldsV1": {"f:status": {}}}],
        },
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "agent", "image": "agent:1", "env": [{"name": "X"}]}],
            "initContainers": [{"name": "init", "image": "init:1"}],
            "volumes": [{"name": "v"}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "conditions": [
                {"type": "Ready", "status": "True", "lastProbeTime": None},
                {"type": "PodScheduled", "status": "True", "reason": "", "message": ""},
            ],
            "containerStatuses": [
                {"name": "agent", "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "ready": 0}
            ],
        },
    }


def test_slim_keeps_everything_the_operator_reads_and_drops_the_rest() -> None:
    pod = _pod()
    kept = slim(pod)
    assert changes.signature(kept) == changes.signature(pod)
    assert admit.challengeable(kept) and status.pod_ready(kept)
    assert kept["metadata"]["annotations"] == pod["metadata"]["annotations"]
    assert kept["status"]["containerStatuses"][0]["state"] == {
        "waiting": {"reason": "CrashLoopBackOff"}
    }
    assert "managedFields" not in kept["metadata"]
    assert "volumes" not in kept["spec"] and "env" not in kept["spec"]["containers"][0]
    not_ready = copy.deepcopy(pod)
    not_ready["status"]["conditions"][0]["status"] = "False"
    assert not admit.challengeable(slim(not_ready))


def _read(store: PodStore, pool: str = "llama", namespace: str = "miners") -> list[Obj]:
    async def fallback(ns: str, name: str) -> list[Obj]:
        raise AssertionError("a synced store reads from memory")

    return asyncio.run(store.source(fallback)(namespace, pool))


def _names(pods: list[Obj]) -> set[str]:
    return {p["metadata"]["name"] for p in pods}


def test_events_add_update_move_and_remove_pods() -> None:
    store = PodStore(scopes=1)
    store.synced()
    store.apply("ADDED", _pod("a", uid="u1"))
    store.apply("ADDED", _pod("b", uid="u2"))
    store.apply("ADDED", _pod("c", pool="other", uid="u3"))
    assert _names(_read(store)) == {"a", "b"} and _names(_read(store, "other")) == {"c"}
    moved = _pod("b", pool="other", uid="u2")  # a pod editor relabelled it
    store.apply("MODIFIED", moved)
    assert _names(_read(store)) == {"a"} and _names(_read(store, "other")) == {"b", "c"}
    unlabelled = _pod("a", uid="u1")
    del unlabelled["metadata"]["labels"][builders.POOL_LABEL]
    store.apply("MODIFIED", unlabelled)
    assert _read(store) == []
    # a DELETED made up after a re-list carries the name alone
    store.apply("DELETED", {"metadata": {"namespace": "miners", "name": "c"}})
    assert _names(_read(store, "other")) == {"b"}
    assert _read(store, "llama", namespace="elsewhere") == []
    assert len(store) == 1


def test_the_latest_event_wins() -> None:
    store = PodStore(scopes=1)
    store.synced()
    pod = _pod()
    store.apply("ADDED", pod)
    gone_ip = copy.deepcopy(pod)
    gone_ip["status"]["podIP"] = "10.0.0.9"
    store.apply("MODIFIED", gone_ip)
    (read,) = _read(store)
    assert read["status"]["podIP"] == "10.0.0.9"


def test_reads_wait_for_every_watch_to_have_listed() -> None:
    async def scenario() -> tuple[list[str], list[Obj]]:
        store = PodStore(scopes=2, wait_s=30)
        order: list[str] = []

        async def fallback(ns: str, name: str) -> list[Obj]:
            raise AssertionError("the watches listed in time")

        async def read() -> list[Obj]:
            pods = await store.source(fallback)("miners", "llama")
            order.append("read")
            return pods

        reader = asyncio.create_task(read())
        store.apply("ADDED", _pod("a"))
        await asyncio.sleep(0.01)
        store.synced()  # one namespace listed: not yet
        await asyncio.sleep(0.01)
        order.append("second listed")
        store.synced()
        return order, await reader

    order, pods = asyncio.run(scenario())
    assert order == ["second listed", "read"]
    assert _names(pods) == {"a"}


def test_a_watch_that_never_lists_sends_reads_to_the_apiserver() -> None:
    """An empty store must never read as "the pool has no pods": that would withdraw
    every endpoint."""
    store = PodStore(scopes=1, wait_s=0.05)
    store.apply("ADDED", _pod("a"))

    async def listed(ns: str, name: str) -> list[Obj]:
        return [_pod("from-the-apiserver")]

    pods = asyncio.run(store.source(listed)("miners", "llama"))
    assert _names(pods) == {"from-the-apiserver"}


@pytest.mark.parametrize("scopes", [0, -1])
def test_a_store_fed_by_no_watch_is_synced(scopes: int) -> None:
    assert _read(PodStore(scopes=scopes)) == []
