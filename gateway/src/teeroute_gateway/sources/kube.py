"""The cluster source: watches Routes, MinerPools and the operator's attested EndpointSlices,
keeps a cache of each, and hands the gateway a fresh `Inventory`. Endpoints come only from the
operator's signed admission records in those slices and in the pools' status, checked against
the operator's key (`operator_key`); pods are not watched: nothing on them is trusted.

The gateway starts it once (`await KubeSource(kube, on_change=...).run()` in a task) and
builds a catalog from every inventory it is given: after the first complete list of all
three kinds, after every change (debounced, so a burst is one inventory), and every
`resync_s` even without changes, so that attestation expiries are re-evaluated. Requests
never reach the apiserver; they read the catalog.

The apiserver going away never ends `run()`: the watches retry with backoff (see
`Kube.watch`) and the caches keep what was last seen. Since each endpoint carries its
attestation expiry, the periodic inventories lose endpoints as their leases run out, so
routing fails closed while the gateway is cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from teeroute import admission
from teeroute.kube import Kube, paths
from teeroute.kube.client import DELETED, SYNCED
from teeroute_gateway.catalog import Inventory
from teeroute_gateway.sources.kube_inventory import inventory_from

log = logging.getLogger(__name__)
Obj = dict[str, Any]


@dataclass(frozen=True)
class Watched:
    name: str
    api_version: str
    kind: str
    label_selector: str = ""


WATCHED = (
    Watched("routes", "teeroute.dev/v1alpha1", "Route"),
    Watched("pools", "teeroute.dev/v1alpha1", "MinerPool"),
    Watched(
        "slices",
        "discovery.k8s.io/v1",
        "EndpointSlice",
        f"{admission.SLICE_MANAGED_BY_LABEL}={admission.MANAGED_BY}",
    ),
)
"""What the gateway watches; its RBAC (e2e/sandbox/gateway-rbac.yaml) grants exactly this."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class KubeSource:
    def __init__(
        self,
        kube: Kube,
        *,
        on_change: Callable[[Inventory], None],
        operator_key: bytes,
        namespaces: Sequence[str] = (),
        debounce_s: float = 0.05,
        resync_s: float = 10.0,
        watch_timeout_s: int = 300,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        """`namespaces`: where to watch (empty: the whole cluster). `debounce_s`: how long
        after a change to wait for more before building. `resync_s`: the longest time
        between two inventories. `watch_timeout_s`: each watch request's server-side
        timeout, after which it is reopened. `operator_key`: the operator's raw Ed25519
        public key; only admission records it signed become endpoints."""
        self.kube = kube
        self.on_change = on_change
        self.operator_key = operator_key
        self.namespaces = tuple(namespaces)
        self.debounce_s = debounce_s
        self.resync_s = resync_s
        self.watch_timeout_s = watch_timeout_s
        self.clock = clock
        self.caches: dict[str, dict[tuple[str, str], Obj]] = {w.name: {} for w in WATCHED}
        self._streams = [(w, ns) for w in WATCHED for ns in (self.namespaces or ("",))]
        self._synced: set[tuple[str, str]] = set()
        self._changed = asyncio.Event()
        self._warned: set[str] = set()
        self._ready = False
        self.inventory: Inventory | None = None
        """The last inventory delivered."""

    @property
    def ready(self) -> bool:
        """True once the first complete inventory was delivered (and ever after)."""
        return self._ready

    async def run(self) -> None:
        """Watch until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            for watched, namespace in self._streams:
                tasks.create_task(self._follow(watched, namespace))
            tasks.create_task(self._deliver_forever())

    async def _follow(self, watched: Watched, namespace: str) -> None:
        """Keep one cache up to date from one watch; never ends but by cancellation."""
        while True:
            try:
                await self._apply_events(watched, namespace)
            except Exception:
                # A bug, not the apiserver (the watch itself retries those): start over
                # from a fresh list rather than keep a cache that may have missed events.
                log.exception("watch of %s in %r failed; restarting", watched.name, namespace)
                self._forget(watched, namespace)
                await asyncio.sleep(self.resync_s)

    async def _apply_events(self, watched: Watched, namespace: str) -> None:
        cache = self.caches[watched.name]
        path = paths.collection(watched.api_version, watched.kind, namespace or None)
        events = self.kube.watch(
            path, label_selector=watched.label_selector, timeout_s=self.watch_timeout_s
        )
        async with contextlib.aclosing(events):
            async for type_, obj in events:
                if type_ == SYNCED:
                    self._synced.add((watched.name, namespace))
                else:
                    meta = obj.get("metadata") or {}
                    key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
                    if type_ == DELETED:
                        cache.pop(key, None)
                    else:
                        cache[key] = obj
                self._changed.set()

    def _forget(self, watched: Watched, namespace: str) -> None:
        self._synced.discard((watched.name, namespace))
        cache = self.caches[watched.name]
        for key in [k for k in cache if not namespace or k[0] == namespace]:
            del cache[key]

    async def _deliver_forever(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.resync_s):
                    await self._changed.wait()
            except TimeoutError:
                pass
            else:
                await asyncio.sleep(self.debounce_s)
            self._changed.clear()
            if len(self._synced) == len(self._streams):
                self.deliver()

    def deliver(self) -> None:
        """Build the inventory from the caches as of now and hand it on."""
        warnings: list[str] = []
        try:
            inventory = inventory_from(
                self.caches["routes"].values(),
                self.caches["pools"].values(),
                self.caches["slices"].values(),
                self.clock(),
                operator_key=self.operator_key,
                namespaces=self.namespaces,
                warn=warnings.append,
            )
            self.on_change(inventory)
        except Exception:
            log.exception("building or handing on the inventory failed; keeping the last one")
            return
        finally:
            # Each problem is logged when it appears, not on every periodic rebuild.
            for message in warnings:
                if message not in self._warned:
                    log.warning("%s", message)
            self._warned = set(warnings)
        self.inventory = inventory
        self._ready = True
