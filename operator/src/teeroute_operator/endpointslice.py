"""Publishing a pool's attested EndpointSlice from the operator's own leases, as of now. Called
after every sweep and on every reconcile of the pool (so a pod that stops being ready or is
deleted leaves the slice at once, not at the next sweep).

The slice lists the admitted pods' addresses for Kubernetes-native proxies, and carries the
operator's signed admission record of each (annotation `teeroute.dev/admission-records`): what
the gateway routes on. `recover` reads those records back after a restart."""

from __future__ import annotations

import datetime as dt
from typing import Any

from teeroute import admission, admission_record
from teeroute.admission import AdmittedEndpoint
from teeroute.admission_record import AdmissionRecord
from teeroute.api.minerpool import MinerPool
from teeroute.kube import Kube, paths
from teeroute_operator import admit, builders
from teeroute_operator.leases import LeaseBook

Obj = dict[str, Any]


async def publish(
    kube: Kube, pool: MinerPool, pods: list[Obj], now: dt.datetime, leases: LeaseBook
) -> int:
    """Apply the slice; return how many endpoints it lists."""
    await recover(kube, leases, pool, pods, now)
    listed, tokens = admitted(pool, pods, now, leases)
    slice_ = admission.build_slice(
        namespace=pool.metadata.namespace,
        pool=pool.metadata.name,
        port=builders.AGENT_PORT,
        endpoints=listed,
        owner=builders.owner_reference(pool),
    )
    slice_["metadata"]["annotations"][admission_record.RECORDS_ANNOTATION] = (
        admission_record.dump_list(tokens)
    )
    await kube.apply(slice_)
    return len(listed)


def admitted(
    pool: MinerPool, pods: list[Obj], now: dt.datetime, leases: LeaseBook
) -> tuple[list[AdmittedEndpoint], list[str]]:
    """The pods to list (ready, at the address they were challenged at, leased) and their
    signed records (none when the operator has no key: then no gateway routes to them)."""
    key = (pool.metadata.namespace, pool.metadata.name)
    listed, tokens = [], []
    for pod in pods:
        if not admit.challengeable(pod):
            continue
        lease = leases.get(key, pod["metadata"]["uid"])
        url = _agent_url(pod)
        expires = lease.record.expires_at if lease is not None else None
        if lease is None or lease.url != url or expires is None or not lease.record.admitted(now):
            continue
        listed.append(
            AdmittedEndpoint(
                address=pod["status"]["podIP"],
                port=builders.AGENT_PORT,
                expires_at=expires,
                pod=pod["metadata"]["name"],
                node=(pod.get("spec") or {}).get("nodeName") or "",
            )
        )
        token = leases.token(key, lease)
        if token is not None:
            tokens.append(token)
    return listed, tokens


async def recover(
    kube: Kube, leases: LeaseBook, pool: MinerPool, pods: list[Obj], now: dt.datetime
) -> None:
    """Once per pool and operator process: take back the leases it had published."""
    key = (pool.metadata.namespace, pool.metadata.name)
    if leases.recovered(key):
        return
    path = (
        f"{paths.collection('discovery.k8s.io/v1', 'EndpointSlice', pool.metadata.namespace)}/"
        f"{admission.slice_name(pool.metadata.name)}"
    )
    found = await kube.get_or_none(path)
    notes = ((found or {}).get("metadata") or {}).get("annotations") or {}
    by_uid = {p["metadata"]["uid"]: p for p in pods}

    def exists(record: AdmissionRecord) -> str | None:
        pod = by_uid.get(record.pod_uid)
        if pod is None or pod["metadata"]["name"] != record.endpoint:
            return None
        return record.pod_uid if _agent_url(pod) == record.url else None

    tokens = admission_record.load_list(notes.get(admission_record.RECORDS_ANNOTATION, ""))
    leases.recover(key, tokens, now, exists)


def _agent_url(pod: Obj) -> str:
    ip = (pod.get("status") or {}).get("podIP") or ""
    return f"http://{ip}:{builders.AGENT_PORT}"
