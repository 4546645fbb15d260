"""The cluster source's decisions (pure): raw Routes, MinerPools and attested EndpointSlices,
as the watches cached them, become the gateway's `Inventory` at a given time.

`sources/kube.py` calls `inventory_from` after every change and periodically; tests call it
with plain dicts. An endpoint is routed only from an admission record that the operator's key
signed (teeroute.admission_record), for the pool it is published with, unexpired at `now`:

- In-cluster miners: the records in the pool's `<pool>-attested` slices (annotation
  `teeroute.dev/admission-records` on each; one slice per 100 endpoints). The slices' own
  entries and the pods are not read: a namespace editor can write pods and their
  annotations, so nothing taken from them could choose an address or a key. Address, TEE,
  measurement, keys and expiry are the record's.
- External miners: the record in the pool's status entry, and only for an endpoint still
  declared in the spec with the same URL (a lease for a removed endpoint, or for the URL it
  had before, is not a lease for what the spec names now).

Records that do not verify are reported through `warn` (naming the check) and skipped; so are
objects that fail validation (a MinerPool whose status alone is unreadable keeps its spec).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from teeroute import admission, admission_record
from teeroute.admission_record import AdmissionRecord
from teeroute.api.minerpool import MinerPool
from teeroute.api.route import Route
from teeroute_gateway.catalog import Endpoint, Inventory, pool_key

Obj = dict[str, Any]
Warn = Callable[[str], None]
M = TypeVar("M", Route, MinerPool)

log = logging.getLogger(__name__)


def inventory_from(
    routes: Iterable[Obj],
    pools: Iterable[Obj],
    slices: Iterable[Obj],
    now: dt.datetime,
    *,
    operator_key: bytes,
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
    by_pool = _slices_by_pool((s for s in slices if wanted(s)), warn)
    endpoints: dict[str, list[Endpoint]] = {}
    for pool, raw in parsed_pools:
        key = pool_key(pool.metadata.namespace, pool.metadata.name)
        records = [
            *_in_cluster(key, by_pool.get(key, ()), operator_key, warn),
            *_external(pool, raw.get("status"), operator_key, warn),
        ]
        found = [_endpoint(key, r) for r in records if r.admitted(now)]
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
    """Attested slices by pool key (a pool has one per 100 endpoints): named
    `<pool>-attested` or `<pool>-attested-<n>`, labelled as the operator's and, when labelled
    with a pool, with the same one."""
    found: dict[str, list[Obj]] = {}
    for slice_ in slices:
        name, labels = _name(slice_), _meta(slice_).get("labels") or {}
        if labels.get(admission.SLICE_MANAGED_BY_LABEL) != admission.MANAGED_BY:
            continue
        named = admission.slice_shard(name)
        if named is None:
            continue
        pool = named[0]
        if labels.get(admission.POOL_LABEL, pool) != pool:
            warn(f"EndpointSlice {_namespace(slice_)}/{name} ignored: its pool label disagrees")
            continue
        found.setdefault(pool_key(_namespace(slice_), pool), []).append(slice_)
    return found


def _in_cluster(
    key: str, slices: Iterable[Obj], operator_key: bytes, warn: Warn
) -> list[AdmissionRecord]:
    found = []
    for slice_ in slices:
        notes = _meta(slice_).get("annotations") or {}
        tokens = admission_record.load_list(notes.get(admission_record.RECORDS_ANNOTATION, ""))
        found += admission_record.verify_all(tokens, operator_key, pool=key, warn=warn)
    return found


def _external(
    pool: MinerPool, status: Any, operator_key: bytes, warn: Warn
) -> list[AdmissionRecord]:
    if not pool.spec.endpoints or not isinstance(status, dict):
        return []
    declared = {e.name: e.url.rstrip("/") for e in pool.spec.endpoints}
    key = pool_key(pool.metadata.namespace, pool.metadata.name)
    tokens = [
        e.get("admissionRecord")
        for e in status.get("endpoints") or []
        if isinstance(e, dict) and e.get("admissionRecord")
    ]
    records = admission_record.verify_all(tokens, operator_key, pool=key, warn=warn)
    return [r for r in records if declared.get(r.endpoint) == r.url.rstrip("/")]


def _endpoint(key: str, record: AdmissionRecord) -> Endpoint:
    hpke = _raw_key(record.hpke_public_key)
    signing = _raw_key(record.signing_public_key)
    return Endpoint(
        key=f"{key}/{record.endpoint}",
        pool=key,
        url=record.url.rstrip("/"),
        tee=record.tee,
        attested_at=record.attested_at,
        expires_at=record.expires_at,
        measurement=record.measurement,
        chip_id=record.chip_id,
        hpke_key_sha256=hashlib.sha256(hpke).hexdigest() if hpke else "",
        signing_key_sha256=hashlib.sha256(signing).hexdigest() if signing else "",
        hpke_public=hpke,
    )


def _raw_key(text: str) -> bytes | None:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _unique(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """One endpoint per key (an address listed twice): the one that expires first."""
    chosen: dict[str, Endpoint] = {}
    for e in endpoints:
        held = chosen.get(e.key)
        if held is None or (e.expires_at or _NEVER) < (held.expires_at or _NEVER):
            chosen[e.key] = e
    return list(chosen.values())


_NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)


def _order(obj: Route | MinerPool) -> tuple[str, str]:
    return obj.metadata.namespace, obj.metadata.name


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _namespace(obj: Obj) -> str:
    return str(_meta(obj).get("namespace", ""))


def _name(obj: Obj) -> str:
    return str(_meta(obj).get("name", ""))
