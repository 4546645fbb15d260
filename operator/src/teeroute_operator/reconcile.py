"""Reconciling one MinerPool or Route: read, decide (pure modules), apply. Called by the
kopf handlers for every trigger (spec change, child change, pool change, timer), serialised
per object, idempotent, so any number of triggers or restarts converges to one result."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from teeroute.api.minerpool import MinerPool
from teeroute.api.route import Route
from teeroute.kube import Kube, paths
from teeroute_operator import builders, endpointslice, podstore, publishing
from teeroute_operator.conditions import is_true
from teeroute_operator.leases import LeaseBook
from teeroute_operator.routes import route_status
from teeroute_operator.status import Observed, pool_status

Obj = dict[str, Any]
EventSink = Callable[[Obj, str, str, str], None]
"""(object, type Normal|Warning, reason, message) -> posts a Kubernetes Event."""

_locks: defaultdict[tuple[str, str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
POOL_RECONCILES = 32
_pool_slots = asyncio.Semaphore(POOL_RECONCILES)
"""Pool reconciles in progress at once, whatever triggered them. Each holds the pool, its
model, its wanted children and the replies it read until it ends; with 500 pools created
together ~400 were in progress at once (tracemalloc: ~20 MB of them), for no more
throughput than 32 give over the client's 16 connections. Taken after the pool's own lock,
so a reconcile waiting for its pool holds no slot."""
ROUTE_NAMESPACES = 2
_namespace_slots = asyncio.Semaphore(ROUTE_NAMESPACES)
"""Namespaces whose Routes are reconciled at once: each run holds every pool of its
namespace, listed and validated (tracemalloc, 500 pools in 10 namespaces: 4.4 MB of pool
models alone, plus their parsed replies, while the ten ran together)."""
_MANAGED_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
)


class Scope(enum.Enum):
    """How much of a pool a reconcile looks at, by what triggered it. Each request costs the
    apiserver and the operator's event loop (~15 per full reconcile); at 500 pools the
    reconciles triggered by pod events were most of the operator's CPU while converging."""

    FULL = "full"
    """Spec changed, resumed or periodic resync: apply the children, delete those the spec
    no longer wants, refresh the status."""
    CHILDREN = "children"
    """A child (Deployment, Service, PodDisruptionBudget, NetworkPolicy) changed: repair
    drift and refresh the status. Nothing to prune: the spec, and so the wanted set, is as
    the last full reconcile saw it."""
    STATUS = "status"
    """A pod changed or a sweep ended: only the status and the slices can differ."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def reconcile_pool(
    kube: Kube,
    namespace: str,
    name: str,
    emit: EventSink,
    *,
    release_key: bytes,
    leases: LeaseBook,
    gateway_keys: str = "",
    scope: Scope = Scope.FULL,
    pods: podstore.PodSource | None = None,
) -> None:
    """`release_key`: the operator's release public key (empty: none), pinned by the agents;
    `gateway_keys`: the gateway's public keys (empty: none), likewise.
    `leases`: the operator's own leases (shared with the sweeper); `scope`: what the trigger
    can have changed (Scope); `pods`: where it reads the pool's pods (podstore.py; by
    default, a list)."""
    async with _locks[("MinerPool", namespace, name)], _pool_slots:
        path = f"{paths.collection('teeroute.dev/v1alpha1', 'MinerPool', namespace)}/{name}"
        body = await kube.get_or_none(path)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return  # deleted: owner references let the garbage collector remove the children
        try:
            pool = MinerPool.model_validate(body)
        except ValidationError as exc:
            emit(body, "Warning", "InvalidSpec", _first_error(exc))
            return
        if scope is not Scope.STATUS:
            wanted = builders.children(pool, release_key=release_key, gateway_keys=gateway_keys)
            for child in wanted:
                await _apply(kube, body, child, emit)
            if scope is Scope.FULL:
                await _prune(kube, pool, wanted)
        found = await (pods or podstore.listed(kube))(namespace, name)
        now = _now()
        if pool.spec.endpoints is None:
            await endpointslice.publish(kube, pool, found, now, leases)
        seen = Observed(
            deployment=await kube.get_or_none(
                f"{paths.collection('apps/v1', 'Deployment', namespace)}/{name}"
            ),
            pods=found,
            now=now,
            attested=frozenset(leases.admitted((namespace, name), now)),
        )
        await _publish(kube, path, body, pool_status(pool, seen, body.get("status") or {}), emit)


async def _apply(kube: Kube, owner: Obj, child: Obj, emit: EventSink) -> None:
    before = await kube.get_or_none(paths.of(child))
    if before is not None and publishing.covers(before, child):
        return  # the apiserver already holds all of it: an apply would be a write for nothing
    after = await kube.apply(child)
    kind = child["kind"]
    if before is None:
        emit(owner, "Normal", "Created", f"created {kind} {child['metadata']['name']}")
    elif before["metadata"]["resourceVersion"] != after["metadata"]["resourceVersion"] and _spec_of(
        before
    ) != _spec_of(after):
        emit(
            owner,
            "Normal",
            "Reconciled",
            f"restored {kind} {child['metadata']['name']} to the pool's spec",
        )


def _spec_of(obj: Obj) -> Any:
    return obj.get("spec")


async def _prune(kube: Kube, pool: MinerPool, wanted: list[Obj]) -> None:
    """Delete children this pool no longer wants (e.g. its Deployment after switching to
    external endpoints). Only objects it controls, found by label and owner uid."""
    keep = {(c["apiVersion"], c["kind"], c["metadata"]["name"]) for c in wanted}
    for api_version, kind in _MANAGED_KINDS:
        found = await kube.list(
            paths.collection(api_version, kind, pool.metadata.namespace),
            labelSelector=f"{builders.POOL_LABEL}={pool.metadata.name}",
        )
        for obj in found:
            owners = obj["metadata"].get("ownerReferences") or []
            ours = any(o.get("uid") == pool.metadata.uid for o in owners)
            if ours and (api_version, kind, obj["metadata"]["name"]) not in keep:
                await kube.delete(paths.of({**obj, "apiVersion": api_version, "kind": kind}))


async def _publish(kube: Kube, path: str, body: Obj, status: Obj, emit: EventSink) -> None:
    previous = body.get("status") or {}
    if all(previous.get(key) == value for key, value in status.items()):
        return  # a merge patch of these keys would change nothing
    await kube.patch_status(path, status)
    was, now = (is_true(s.get("conditions") or [], "Ready") for s in (previous, status))
    if was != now:
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        emit(body, "Normal" if now else "Warning", ready["reason"], ready["message"])
    degraded = next((c for c in status["conditions"] if c["type"] == "Degraded"), None)
    if (
        degraded
        and degraded["status"] == "True"
        and not is_true(previous.get("conditions") or [], "Degraded")
    ):
        emit(body, "Warning", degraded["reason"], degraded["message"])


async def reconcile_route(
    kube: Kube,
    namespace: str,
    name: str,
    emit: EventSink,
    pools: dict[str, MinerPool] | None = None,
) -> None:
    """`pools`: the namespace's pools, when the caller listed them already."""
    async with _locks[("Route", namespace, name)]:
        path = f"{paths.collection('teeroute.dev/v1alpha1', 'Route', namespace)}/{name}"
        body = await kube.get_or_none(path)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        try:
            route = Route.model_validate(body)
        except ValidationError as exc:
            emit(body, "Warning", "InvalidSpec", _first_error(exc))
            return
        if pools is None:
            pools = await _pools(kube, namespace)
        status = route_status(route, pools, body.get("status") or {}, _now())
        previous = body.get("status") or {}
        if status != previous:
            await kube.patch_status(path, status)
            if is_true(previous.get("conditions") or [], "Ready") != is_true(
                status["conditions"], "Ready"
            ):
                ready = status["conditions"][-1]
                emit(
                    body,
                    "Normal" if ready["status"] == "True" else "Warning",
                    ready["reason"],
                    ready["message"],
                )


async def reconcile_routes_in(kube: Kube, namespace: str, emit: EventSink) -> None:
    async with _namespace_slots:
        pools = await _pools(kube, namespace)  # once for all the namespace's Routes
        routes = await kube.list(paths.collection("teeroute.dev/v1alpha1", "Route", namespace))
        for route in routes:
            await reconcile_route(kube, namespace, route["metadata"]["name"], emit, pools)


async def _pools(kube: Kube, namespace: str) -> dict[str, MinerPool]:
    pools = {}
    for body in await kube.list(paths.collection("teeroute.dev/v1alpha1", "MinerPool", namespace)):
        if body["metadata"].get("deletionTimestamp"):
            continue
        try:
            pools[body["metadata"]["name"]] = MinerPool.model_validate(body)
        except ValidationError:
            continue  # its own reconcile reports it
    return pools


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}"[:512]
