"""Kubernetes Events about the operator's objects.

`kopf.event` finds its queue through context variables that kopf sets only inside its own
per-object tasks (handlers, daemons, timers). An Event emitted from any other task raised
LookupError after the status it reported was written, and was lost: the status refreshes
that the operator's own pod watch triggers (a pool turning Ready, or Degraded by an
unschedulable pod) run there. `EventPoster.emit` hands an Event to kopf where kopf can take
it (most of them: Created, Attested, ...; kopf posts them concurrently on its own
connection) and posts the others itself: queued (never blocking, never raising; at most
`max_queued` wait, later ones are dropped and counted), one task posting them in order.
An Event is best effort, as in Kubernetes itself: one the apiserver refuses is logged and
dropped. `event_body` (pure) is what is posted: a core/v1 Event, its message cut to 1 KiB.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
from typing import Any, cast

import kopf

from teeroute.kube import Kube

log = logging.getLogger(__name__)
Obj = dict[str, Any]

COMPONENT = "teeroute-operator"
MAX_MESSAGE = 1024
MAX_QUEUED = 1000
_CUT = " ... "


def event_body(
    obj: Obj, type_: str, reason: str, message: str, now: dt.datetime, instance: str
) -> Obj:
    """The core/v1 Event that says `reason: message` about `obj` (a cluster-scoped object's
    Event goes to `default`, as kubectl looks for it there)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    if len(message) > MAX_MESSAGE:
        half = (MAX_MESSAGE - len(_CUT)) // 2
        message = message[:half] + _CUT + message[-half:]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name') or 'teeroute'}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventPoster:
    def __init__(self, max_queued: int = MAX_QUEUED, instance: str | None = None) -> None:
        self._queue: asyncio.Queue[Obj] = asyncio.Queue(max_queued)
        self._instance = instance or socket.gethostname()
        self.dropped = 0
        """Events not queued because `max_queued` were waiting already."""

    def emit(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """An Event about `obj`, from any task of the event loop."""
        try:
            kopf.event(cast(Any, obj), type=type_, reason=reason, message=message)
            return
        except LookupError:  # not one of kopf's tasks: ours to post
            pass
        self.queue(obj, type_, reason, message)

    def queue(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """Queue an Event about `obj` for `run` to post."""
        body = event_body(obj, type_, reason, message, dt.datetime.now(dt.UTC), self._instance)
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "%d Events dropped: the apiserver takes them slower than they come",
                    self.dropped,
                )

    def pending(self) -> int:
        return self._queue.qsize()

    async def run(self, kube: Kube) -> None:
        """Post the queued Events, in order, until cancelled."""
        while True:
            body = await self._queue.get()
            namespace = body["metadata"]["namespace"]
            try:
                await kube.create(f"/api/v1/namespaces/{namespace}/events", body)
            except Exception as exc:  # best effort: an Event must never stop the next one
                log.warning("an Event (%s) was not posted: %s", body["reason"], exc)
