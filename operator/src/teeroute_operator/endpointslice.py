"""Publishing a pool's attested EndpointSlices from the operator's own leases, as of now. Called
after every sweep and on every reconcile of the pool (so a pod that stops being ready or is
deleted leaves its slice within a second, not at the next sweep).

The slices list the admitted pods' addresses for Kubernetes-native proxies, 100 per slice
(shards.py: a stable assignment, so one endpoint's change rewrites one slice), and each carries
the operator's signed admission records of the endpoints it lists (annotation
`teeroute.dev/admission-records`): what the gateway routes on. Records are the *shown* leases
(leases.LeaseBook.shown), which change only when they must (publishing.py), and a slice is
written only when the apiserver's copy differs from it (`publishing.covers`): a steady pool
costs reads, not writes. Slices of the pool that should list nothing (but the first) are
deleted. `recover` reads the records of all of them back after a restart."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from teeroute import admission, admission_record
from teeroute.admission import AdmittedEndpoint
from teeroute.admission_record import AdmissionRecord
from teeroute.api.minerpool import MinerPool
from teeroute.kube import Kube, paths
from teeroute_operator import admit, builders, publishing, shards
from teeroute_operator.leases import LeaseBook

Obj = dict[str, Any]
Entry = tuple[AdmittedEndpoint, str | None]
"""An endpoint to list and its signed record (None when the operator has no key)."""
SLICES = "discovery.k8s.io/v1"


async def publish(
    kube: Kube, pool: MinerPool, pods: list[Obj], now: dt.datetime, leases: LeaseBook
) -> int:
    """Write the slices that changed, delete those no longer wanted; return how many
    endpoints they list."""
    live = await live_slices(kube, pool)
    take_back(leases, pool, pods, now, live.values())
    entries = _entries(pool, pods, now, leases)
    wanted = desired(pool, entries, live)
    for shard, obj in wanted.items():
        if shard not in live or not publishing.covers(live[shard], obj):
            await kube.apply(obj)
    for shard, obj in live.items():
        if shard not in wanted:
            await kube.delete(paths.of(obj))
    return len(entries)


def desired(pool: MinerPool, entries: list[Entry], live: dict[int, Obj]) -> dict[int, Obj]:
    """Slice number -> the slice to publish (pure), keeping each endpoint in the slice that
    lists it now."""
    listed = {n: _addresses(obj) for n, obj in live.items()}
    by_address = {e.address: (e, token) for e, token in entries}
    return {
        shard: build(pool, [by_address[a] for a in addresses], shard)
        for shard, addresses in shards.assign(by_address, listed).items()
    }


def build(pool: MinerPool, entries: list[Entry], shard: int) -> Obj:
    """One slice: its endpoints and their signed records."""
    slice_ = admission.build_slice(
        namespace=pool.metadata.namespace,
        pool=pool.metadata.name,
        port=builders.AGENT_PORT,
        endpoints=[e for e, _ in entries],
        owner=builders.owner_reference(pool),
        shard=shard,
    )
    slice_["metadata"]["annotations"][admission_record.RECORDS_ANNOTATION] = (
        admission_record.dump_list([t for _, t in entries if t is not None])
    )
    return slice_


def admitted(
    pool: MinerPool, pods: list[Obj], now: dt.datetime, leases: LeaseBook
) -> tuple[list[AdmittedEndpoint], list[str]]:
    """The pods to list (ready, at the address they were challenged at, leased) and their
    signed records (none when the operator has no key: then no gateway routes to them)."""
    entries = _entries(pool, pods, now, leases)
    return [e for e, _ in entries], [t for _, t in entries if t is not None]


def _entries(pool: MinerPool, pods: list[Obj], now: dt.datetime, leases: LeaseBook) -> list[Entry]:
    key = (pool.metadata.namespace, pool.metadata.name)
    found: list[Entry] = []
    for pod in pods:
        if not admit.challengeable(pod):
            continue
        lease = leases.shown(key, pod["metadata"]["uid"])
        expires = lease.record.expires_at if lease is not None else None
        if lease is None or lease.url != _agent_url(pod) or expires is None:
            continue
        if not lease.record.admitted(now):
            continue
        endpoint = AdmittedEndpoint(
            address=pod["status"]["podIP"],
            port=builders.AGENT_PORT,
            expires_at=expires,
            pod=pod["metadata"]["name"],
            node=(pod.get("spec") or {}).get("nodeName") or "",
        )
        found.append((endpoint, leases.token(key, lease)))
    return found


async def live_slices(kube: Kube, pool: MinerPool) -> dict[int, Obj]:
    """The pool's slices as the apiserver has them, by slice number (only the operator's,
    named as its slices are)."""
    found = await kube.list(
        paths.collection(SLICES, "EndpointSlice", pool.metadata.namespace),
        labelSelector=(
            f"{admission.POOL_LABEL}={pool.metadata.name},"
            f"{admission.SLICE_MANAGED_BY_LABEL}={admission.MANAGED_BY}"
        ),
    )
    slices: dict[int, Obj] = {}
    for obj in found:
        named = admission.slice_shard(obj["metadata"]["name"])
        if named is not None and named[0] == pool.metadata.name:
            # a list's items come without their kind: put it back, as a GET would show it
            slices[named[1]] = {"apiVersion": SLICES, "kind": "EndpointSlice", **obj}
    return slices


async def recover(
    kube: Kube, leases: LeaseBook, pool: MinerPool, pods: list[Obj], now: dt.datetime
) -> None:
    """Once per pool and operator process: take back the leases it had published (of the
    pods that still exist: with none, there is nothing to read)."""
    if not leases.recovered((pool.metadata.namespace, pool.metadata.name)):
        slices = (await live_slices(kube, pool)).values() if pods else ()
        take_back(leases, pool, pods, now, slices)


def take_back(
    leases: LeaseBook, pool: MinerPool, pods: list[Obj], now: dt.datetime, slices: Iterable[Obj]
) -> None:
    """`recover` from slices already read (a no-op once the pool was recovered)."""
    key = (pool.metadata.namespace, pool.metadata.name)
    if leases.recovered(key):
        return
    by_uid = {p["metadata"]["uid"]: p for p in pods}

    def exists(record: AdmissionRecord) -> str | None:
        pod = by_uid.get(record.pod_uid)
        if pod is None or pod["metadata"]["name"] != record.endpoint:
            return None
        return record.pod_uid if _agent_url(pod) == record.url else None

    tokens: list[Any] = []
    for obj in slices:
        notes = (obj.get("metadata") or {}).get("annotations") or {}
        tokens += admission_record.load_list(notes.get(admission_record.RECORDS_ANNOTATION, ""))
    leases.recover(key, tokens, now, exists)


def _addresses(slice_: Obj) -> list[str]:
    return [
        str(address)
        for endpoint in slice_.get("endpoints") or []
        for address in (endpoint.get("addresses") or [])[:1]
    ]


def _agent_url(pod: Obj) -> str:
    ip = (pod.get("status") or {}).get("podIP") or ""
    return f"http://{ip}:{builders.AGENT_PORT}"
