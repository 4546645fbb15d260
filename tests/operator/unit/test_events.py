"""The operator's own Events (events.py): what is posted, and that emitting never blocks or
raises however many wait (the posting itself runs on the sandbox: test_reconcile.py)."""

from __future__ import annotations

import asyncio
import datetime as dt

from teeroute_operator.events import MAX_MESSAGE, EventPoster, event_body

NOW = dt.datetime(2026, 12, 5, 13, 0, tzinfo=dt.UTC)
POOL = {
    "apiVersion": "teeroute.dev/v1alpha1",
    "kind": "MinerPool",
    "metadata": {"name": "llama", "namespace": "miners", "uid": "u1", "resourceVersion": "9"},
    "spec": {"replicas": 2},
}


def test_an_event_names_its_object_and_says_who_posted_it() -> None:
    body = event_body(POOL, "Warning", "Unschedulable", "0/3 nodes", NOW, "op-0")
    assert body["metadata"] == {"generateName": "llama.", "namespace": "miners"}
    assert body["involvedObject"] == {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "MinerPool",
        "name": "llama",
        "namespace": "miners",
        "uid": "u1",
    }
    assert (body["type"], body["reason"], body["message"]) == (
        "Warning",
        "Unschedulable",
        "0/3 nodes",
    )
    assert body["source"] == {"component": "teeroute-operator"}
    assert body["reportingInstance"] == "op-0"
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-12-05T13:00:00Z"


def test_a_long_message_keeps_its_start_and_end_within_the_limit() -> None:
    message = "start " + "x" * 5000 + " end"
    cut = event_body(POOL, "Normal", "R", message, NOW, "i")["message"]
    assert len(cut) <= MAX_MESSAGE and cut.startswith("start ") and cut.endswith(" end")


def test_a_cluster_scoped_objects_event_goes_to_default() -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "n"}}
    assert event_body(node, "Normal", "R", "m", NOW, "i")["metadata"]["namespace"] == "default"


def test_emitting_never_blocks_and_what_does_not_fit_is_counted() -> None:
    async def flood() -> EventPoster:
        poster = EventPoster(max_queued=3, instance="i")
        for n in range(5):  # outside kopf's tasks: queued for the operator to post
            poster.emit(POOL, "Normal", f"R{n}", "m")
        return poster

    poster = asyncio.run(flood())
    assert (poster.pending(), poster.dropped) == (3, 2)
