"""The cluster source's decisions (pure): raw Routes, MinerPools, attested EndpointSlices and
miner Pods, as the watches cached them, become the gateway's `Inventory` at a given time.

`sources/kube.py` calls `inventory_from` after every change and periodically; tests call it
with plain dicts. What is admitted, and with which attestation details:

- In-cluster miners: the entries of the pool's `<pool>-attested` slice that
  `admission.admitted` lets through at `now` (listed, ready, slice expiry in the future).
  Their attestation details come from the pod's verdict annotations. When the pod is known,
  it must agree, or the entry is dropped (fail closed): not terminating, its IP is the
  listed address, no chip change, and its own expiry still in the future; the endpoint
  expires at the earlier of the two expiries (the sweeper writes the pod's verdict before
  the slice, so a revoked verdict shows on the pod first).
- A slice entry whose pod is not (yet) known, e.g. its watch event has not arrived, is kept
  with the pool's TEE type and no `attested_at`: listed, but a Route's maxAttestationAge
  rejects it until the pod's verdict shows when it was attested.
- External miners: `admission.admitted_external` on the pool's status, and only for an
  endpoint still declared in the spec with the same URL (a lease for a removed endpoint, or
  for the URL it had before, is not a lease for what the spec names now).

Objects that fail validation are skipped (a MinerPool whose status alone is unreadable keeps
its spec); each skip is reported through `warn`, naming the object and the field paths.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from teeroute import admission
from teeroute.admission import AdmittedEndpoint, parse_time
from teeroute.api.minerpool import MinerPool
from teeroute.api.route import Route
from teeroute_gateway.catalog import Endpoint, Inventory, pool_key
from teeroute_gateway.sealed import public_key

Obj = dict[str, Any]
Warn = Callable[[str], None]
M = TypeVar("M", Route, MinerPool)

log = logging.getLogger(__name__)


def inventory_from(
    routes: Iterable[Obj],
    pools: Iterable[Obj],
    slices: Iterable[Obj],
    pods: Iterable[Obj],
    now: dt.datetime,
    *,
    namespaces: Sequence[str] = (),
    warn: Warn = log.warning,
) -> Inventory:
    """The inventory at `now` of the objects in `namespaces` (empty: all)."""

    def wanted(obj: Obj) -> bool:
        return not namespaces or _namespace(obj) in namespaces

    parsed_routes = _parse_all(Route, (o for o in routes if wanted(o)), warn)
    parsed_pools = [
        (pool, raw) for raw in pools if wanted(raw) and (pool := parse(MinerPool, raw, warn))
    ]
    by_pod = {(_namespace(p), _name(p)): p for p in pods if wanted(p)}
    by_pool = _slices_by_pool((s for s in slices if wanted(s)), warn)
    endpoints: dict[str, list[Endpoint]] = {}
    for pool, raw in parsed_pools:
        key = pool_key(pool.metadata.namespace, pool.metadata.name)
        found = [
            *_in_cluster(pool, by_pool.get(key, ()), by_pod, now),
            *_external(pool, raw.get("status"), now),
        ]
        endpoints[key] = sorted(_unique(found), key=lambda e: e.key)
    return Inventory(
        routes=sorted(parsed_routes, key=_order),
        pools=sorted((p for p, _ in parsed_pools), key=_order),
        endpoints=endpoints,
    )


def parse(model: type[M], obj: Obj, warn: Warn) -> M | None:
    """The object as `model`, or None (warned) when invalid. A MinerPool or Route whose
    status alone is unreadable is kept without it: routing needs only the spec."""
    what = f"{model.__name__} {_namespace(obj)}/{_name(obj)}"
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        if all(e["loc"][:1] == ("status",) for e in exc.errors()):
            warn(f"{what}: status ignored, invalid at {_where(exc)}")
            try:
                return model.model_validate({k: v for k, v in obj.items() if k != "status"})
            except ValidationError as again:
                exc = again
        warn(f"{what} skipped: invalid at {_where(exc)}")
        return None


def _parse_all(model: type[M], objs: Iterable[Obj], warn: Warn) -> list[M]:
    return [parsed for obj in objs if (parsed := parse(model, obj, warn)) is not None]


def _where(exc: ValidationError, limit: int = 3) -> str:
    errors = exc.errors()
    shown = "; ".join(f"{_path(e['loc'])}: {e['msg']}" for e in errors[:limit])
    more = len(errors) - limit
    return f"{shown} (and {more} more)" if more > 0 else shown


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(object)"


def _slices_by_pool(slices: Iterable[Obj], warn: Warn) -> dict[str, list[Obj]]:
    """Attested slices by pool key: named `<pool>-attested`, labelled as the operator's and,
    when labelled with a pool, with the same one."""
    found: dict[str, list[Obj]] = {}
    for slice_ in slices:
        name, labels = _name(slice_), _meta(slice_).get("labels") or {}
        if labels.get(admission.SLICE_MANAGED_BY_LABEL) != admission.MANAGED_BY:
            continue
        if not name.endswith(admission.SLICE_SUFFIX):
            continue
        pool = name.removesuffix(admission.SLICE_SUFFIX)
        if labels.get(admission.POOL_LABEL, pool) != pool:
            warn(f"EndpointSlice {_namespace(slice_)}/{name} ignored: its pool label disagrees")
            continue
        found.setdefault(pool_key(_namespace(slice_), pool), []).append(slice_)
    return found


def _in_cluster(
    pool: MinerPool,
    slices: Iterable[Obj],
    pods: Mapping[tuple[str, str], Obj],
    now: dt.datetime,
) -> list[Endpoint]:
    namespace = pool.metadata.namespace
    found = []
    for slice_ in slices:
        for entry in admission.admitted(slice_, now):
            endpoint = _pod_endpoint(pool, entry, pods.get((namespace, entry.pod)), now)
            if endpoint is not None:
                found.append(endpoint)
    return found


def _pod_endpoint(
    pool: MinerPool, entry: AdmittedEndpoint, pod: Obj | None, now: dt.datetime
) -> Endpoint | None:
    key = pool_key(pool.metadata.namespace, pool.metadata.name)
    endpoint = Endpoint(
        key=f"{key}/{entry.pod or entry.address}",
        pool=key,
        url=_url(entry.address, entry.port),
        tee=pool.spec.tee.type,
        expires_at=entry.expires_at,
    )
    if pod is None:
        return endpoint
    expires = _pod_expiry(pod, entry.address, now)
    if expires is None:
        return None
    notes = _meta(pod).get("annotations") or {}
    return Endpoint(
        key=endpoint.key,
        pool=key,
        url=endpoint.url,
        tee=notes.get(admission.TEE) or endpoint.tee,
        attested_at=parse_time(notes.get(admission.ATTESTED_AT, "")),
        expires_at=min(entry.expires_at, expires),
        measurement=notes.get(admission.MEASUREMENT, ""),
        chip_id=notes.get(admission.CHIP_ID, ""),
        hpke_key_sha256=notes.get(admission.HPKE_KEY, ""),
        signing_key_sha256=notes.get(admission.SIGNING_KEY, ""),
        hpke_public=public_key(
            notes.get(admission.HPKE_PUBLIC_KEY, ""), notes.get(admission.HPKE_KEY, "")
        ),
    )


def _pod_expiry(pod: Obj, address: str, now: dt.datetime) -> dt.datetime | None:
    """The pod's own verdict expiry when it still admits `address`, else None."""
    meta, status = _meta(pod), pod.get("status") or {}
    notes = meta.get("annotations") or {}
    ips = {status.get("podIP")} | {i.get("ip") for i in status.get("podIPs") or []}
    ips.discard(None)
    if meta.get("deletionTimestamp") or (ips and address not in ips):
        return None
    if notes.get(admission.CHIP_CHANGED):
        return None
    expires = parse_time(notes.get(admission.EXPIRES_AT, ""))
    return expires if expires is not None and expires > now else None


def _external(pool: MinerPool, status: Any, now: dt.datetime) -> list[Endpoint]:
    if not pool.spec.endpoints or not isinstance(status, dict):
        return []
    entries = [e for e in status.get("endpoints") or [] if isinstance(e, dict)]
    by_name = {e.get("name"): e for e in entries}
    declared = {e.name: e.url.rstrip("/") for e in pool.spec.endpoints}
    key = pool_key(pool.metadata.namespace, pool.metadata.name)
    found = []
    for lease in admission.admitted_external({"endpoints": entries}, now):
        url = lease.url.rstrip("/")
        if declared.get(lease.name) != url:
            continue
        entry = by_name[lease.name]
        found.append(
            Endpoint(
                key=f"{key}/{lease.name}",
                pool=key,
                url=url,
                tee=entry.get("tee") or pool.spec.tee.type,
                attested_at=parse_time(entry.get("attestedAt") or ""),
                expires_at=lease.expires_at,
                measurement=entry.get("measurement") or "",
                chip_id=entry.get("chipId") or "",
                hpke_key_sha256=entry.get("hpkeKeySha256") or "",
                signing_key_sha256=entry.get("signingKeySha256") or "",
                hpke_public=public_key(
                    entry.get("hpkePublicKey") or "", entry.get("hpkeKeySha256") or ""
                ),
            )
        )
    return found


def _unique(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """One endpoint per key (an address listed twice): the one that expires first."""
    chosen: dict[str, Endpoint] = {}
    for e in endpoints:
        held = chosen.get(e.key)
        if held is None or (e.expires_at or _NEVER) < (held.expires_at or _NEVER):
            chosen[e.key] = e
    return list(chosen.values())


_NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)


def _url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def _order(obj: Route | MinerPool) -> tuple[str, str]:
    return obj.metadata.namespace, obj.metadata.name


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _namespace(obj: Obj) -> str:
    return str(_meta(obj).get("namespace", ""))


def _name(obj: Obj) -> str:
    return str(_meta(obj).get("name", ""))
