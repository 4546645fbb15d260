"""The contract between the attestation sweeper (which admits endpoints) and everything that
routes to them (the gateway, any Kubernetes-native proxy).

The operator writes the EndpointSlices of a pool, named `<pool>-attested` (and
`<pool>-attested-<n>` past 100 endpoints), labelled with the pool's Service, listing only
endpoints whose evidence verified and has not expired. Each endpoint's expiry is also on the
slice (annotation `teeroute.dev/attestation-expiry`, a JSON map address -> RFC 3339), so a
reader fails closed on its own when the operator stops refreshing: `admitted()` drops what
has expired, whatever the slice lists.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

PREFIX = "teeroute.dev/"
MANAGED_BY = "teeroute-operator"
SLICE_SUFFIX = "-attested"
SERVICE_LABEL = "kubernetes.io/service-name"
SLICE_MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
POOL_LABEL = f"{PREFIX}pool"
EXPIRY = f"{PREFIX}attestation-expiry"

# Pod annotations: the verdict of the last challenge, written by the sweeper for people to
# read. Nothing routes on them (a namespace editor can write them): routers take endpoints from
# the operator's signed admission records (teeroute.admission_record).
ATTESTED_AT = f"{PREFIX}attested-at"
EXPIRES_AT = f"{PREFIX}attestation-expires-at"
TEE = f"{PREFIX}attested-tee"
MEASUREMENT = f"{PREFIX}measurement"
CHIP_ID = f"{PREFIX}chip-id"
HPKE_KEY = f"{PREFIX}hpke-key-sha256"
SIGNING_KEY = f"{PREFIX}signing-key-sha256"
HPKE_PUBLIC_KEY = f"{PREFIX}hpke-public-key"
"""The attested HPKE (X25519) public key itself, standard base64 of its 32 bytes: what
requests are sealed to (its SHA-256 is HPKE_KEY)."""
SIGNING_PUBLIC_KEY = f"{PREFIX}signing-public-key"
"""The attested Ed25519 receipt-signing public key, standard base64 (SHA-256: SIGNING_KEY)."""
SECRETS_RELEASED = f"{PREFIX}secrets-released"
"""Fingerprint of the pool's secrets last released to the pod's enclave (SHA-256 hex over its
HPKE key and the Secrets' names and versions); absent when the pool has none."""
FAILURE = f"{PREFIX}attestation-failure"
CHIP_CHANGED = f"{PREFIX}chip-changed"
READMIT = f"{PREFIX}readmit-chip"
"""On the MinerPool (never a pod: a pod editor must not make this decision):
`"<pod or endpoint name>=<chip id>,…"` re-admits an endpoint whose chip changed."""

VERDICT_ANNOTATIONS = (
    ATTESTED_AT,
    EXPIRES_AT,
    TEE,
    MEASUREMENT,
    CHIP_ID,
    HPKE_KEY,
    SIGNING_KEY,
    HPKE_PUBLIC_KEY,
    SIGNING_PUBLIC_KEY,
    SECRETS_RELEASED,
    FAILURE,
    CHIP_CHANGED,
)


def slice_name(pool: str, shard: int = 0) -> str:
    """The name of the pool's attested slice number `shard`: `<pool>-attested` for the first,
    `<pool>-attested-<n>` for the others (a pool has one per 100 endpoints)."""
    return f"{pool}{SLICE_SUFFIX}" if shard == 0 else f"{pool}{SLICE_SUFFIX}-{shard}"


def slice_shard(name: str) -> tuple[str, int] | None:
    """(pool, shard) of an attested slice's name (`slice_name`'s inverse), None for any other."""
    if name.endswith(SLICE_SUFFIX):
        return name.removesuffix(SLICE_SUFFIX), 0
    pool, _, number = name.rpartition(f"{SLICE_SUFFIX}-")
    if pool and number.isascii() and number.isdigit() and not number.startswith("0"):
        return pool, int(number)
    return None


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime | None:
    """An RFC 3339 time, or None when unreadable (which admits nothing)."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return when if when.tzinfo else None


@dataclass(frozen=True)
class AdmittedEndpoint:
    address: str
    port: int
    expires_at: dt.datetime
    pod: str = ""
    node: str = ""


def admitted(slice_: dict[str, Any], now: dt.datetime) -> list[AdmittedEndpoint]:
    """The endpoints of an attested slice that may receive traffic at `now`: listed, ready,
    with an expiry on the slice that is still in the future. Anything malformed is dropped."""
    expiry = _expiry_map(slice_)
    ports = [p.get("port") for p in slice_.get("ports") or [] if isinstance(p.get("port"), int)]
    if not ports:
        return []
    found = []
    for endpoint in slice_.get("endpoints") or []:
        if (endpoint.get("conditions") or {}).get("ready") is False:
            continue
        for address in endpoint.get("addresses") or []:
            expires = parse_time(expiry.get(address, ""))
            if expires is None or expires <= now:
                continue
            found.append(
                AdmittedEndpoint(
                    address=address,
                    port=ports[0],
                    expires_at=expires,
                    pod=((endpoint.get("targetRef") or {}).get("name")) or "",
                    node=endpoint.get("nodeName") or "",
                )
            )
    return found


@dataclass(frozen=True)
class AdmittedExternal:
    name: str
    url: str
    expires_at: dt.datetime


def admitted_external(pool_status: dict[str, Any], now: dt.datetime) -> list[AdmittedExternal]:
    """External endpoints (a MinerPool's status.endpoints) that may receive traffic at
    `now`: those whose lease has not expired and whose chip has not changed. External
    endpoints are URLs (scheme, host, port, path), which an EndpointSlice cannot carry, so
    their leases live in the pool's status."""
    found = []
    for entry in pool_status.get("endpoints") or []:
        expires = parse_time(entry.get("expiresAt") or "")
        if expires is None or expires <= now or entry.get("chipChanged"):
            continue
        if entry.get("name") and entry.get("url"):
            found.append(AdmittedExternal(entry["name"], entry["url"], expires))
    return found


def _expiry_map(slice_: dict[str, Any]) -> dict[str, str]:
    raw = ((slice_.get("metadata") or {}).get("annotations") or {}).get(EXPIRY, "")
    try:
        value = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, RecursionError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def build_slice(
    *,
    namespace: str,
    pool: str,
    port: int,
    endpoints: list[AdmittedEndpoint],
    owner: dict[str, Any] | None = None,
    shard: int = 0,
) -> dict[str, Any]:
    """The EndpointSlice number `shard` listing `endpoints` for the pool's Service (sorted:
    stable output, so an unchanged set is an unchanged object)."""
    ordered = sorted(endpoints, key=lambda e: e.address)
    metadata: dict[str, Any] = {
        "name": slice_name(pool, shard),
        "namespace": namespace,
        "labels": {
            SERVICE_LABEL: pool,
            SLICE_MANAGED_BY_LABEL: MANAGED_BY,
            POOL_LABEL: pool,
            "app.kubernetes.io/managed-by": MANAGED_BY,
        },
        "annotations": {
            EXPIRY: json.dumps(
                {e.address: rfc3339(e.expires_at) for e in ordered}, separators=(",", ":")
            )
        },
    }
    if owner:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": "IPv4",
        "ports": [{"name": "agent", "port": port, "protocol": "TCP"}],
        "endpoints": [_endpoint(e, namespace) for e in ordered],
    }


def _endpoint(e: AdmittedEndpoint, namespace: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "addresses": [e.address],
        "conditions": {"ready": True, "serving": True, "terminating": False},
    }
    if e.pod:
        out["targetRef"] = {"kind": "Pod", "name": e.pod, "namespace": namespace}
    if e.node:
        out["nodeName"] = e.node
    return out
