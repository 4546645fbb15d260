"""The operator's own memory of every endpoint's lease, and the signed records it publishes.

A lease is decided only from the operator's own challenges (lease.next_record); it is never
read back from pod annotations, which anyone who may edit pods in the miner's namespace can
write. What the operator concluded is published as admission records signed with its key
(teeroute.admission_record): the gateway routes on those and nothing else.

A restarted operator starts with an empty book; before its first sweep or publish of a pool it
`recover`s what it had published: only records that its own key signed for that pool, that have
not expired, for endpoints that still exist. Replaying an older record of its own gives nothing
that outlives the challenge it was made from + maxEvidenceAge.

An enclave key may hold one lease at a time across all pools (`claim`): the same attested HPKE
key under a second endpoint is a relay of another enclave, refused (check admission.duplicate-key).
Endpoints challenged in the same sweep claim their key as soon as their evidence verifies (no
await between the check and the claim), so two of them can never both be admitted with one key.

What is published of a lease (`shown`) follows the lease except in its times: a renewal is
published only when the published expiry would lapse before the next sweep
(publishing.to_show), so a steady pool costs no writes between refreshes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from teeroute import admission_record
from teeroute.admission_record import AdmissionRecord
from teeroute.sealing.secrets import Signer
from teeroute_operator import publishing
from teeroute_operator.lease import Record

PoolKey = tuple[str, str]
Holder = tuple[PoolKey, str]
DUPLICATE_KEY_CHECK = "admission.duplicate-key"
CLAIM_TTL = dt.timedelta(minutes=1)
"""A claim whose lease was never written (its sweep failed) stops counting after this."""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lease:
    record: Record
    name: str
    """The endpoint's name: the pod's, or the external endpoint's."""
    url: str
    """Where it was challenged: the pod's agent URL, or the external URL."""
    pod_uid: str = ""


class LeaseBook:
    def __init__(self, signer: Signer | None) -> None:
        self.signer = signer
        self._pools: dict[PoolKey, dict[str, Lease]] = {}
        self._shown: dict[PoolKey, dict[str, Lease]] = {}
        """What is published of each lease (publishing.to_show): lags only in its times."""
        self._recovered: set[PoolKey] = set()
        self._claims: dict[str, tuple[Holder, dt.datetime]] = {}
        """Enclave key (SHA-256 hex) -> the endpoint whose evidence with it just verified."""
        self._claimed: dict[Holder, set[str]] = {}
        """The reverse of `_claims`: endpoint -> the keys it claimed."""
        self._by_key: dict[str, dict[Holder, None]] = {}
        """Enclave key -> the endpoints whose lease carries it (admitted or not), in order:
        `holder` runs at every verified challenge, and scanning every lease there made a
        sweep cycle quadratic in the endpoints (~6 M record checks a minute at 2,500)."""

    def get(self, pool: PoolKey, key: str) -> Lease | None:
        return self._pools.get(pool, {}).get(key)

    def record(self, pool: PoolKey, key: str, url: str) -> Record:
        """The endpoint's record, or a new one when it has none or was challenged elsewhere."""
        lease = self.get(pool, key)
        return lease.record if lease is not None and lease.url == url else Record()

    def put(self, pool: PoolKey, key: str, lease: Lease) -> None:
        """The endpoint's lease after its challenge (its claim, if any, is settled by it);
        published as it is (`renew` publishes only what must be)."""
        self._unindex(pool, key)
        self._pools.setdefault(pool, {})[key] = lease
        self._shown.setdefault(pool, {})[key] = lease
        if lease.record.hpke_key:
            self._by_key.setdefault(lease.record.hpke_key, {})[(pool, key)] = None
        for claimed in self._claimed.pop((pool, key), set()):
            if self._claims.get(claimed, (None,))[0] == (pool, key):
                del self._claims[claimed]

    def _unindex(self, pool: PoolKey, key: str) -> None:
        """Drop the endpoint's current lease from `_by_key`."""
        lease = self._pools.get(pool, {}).get(key)
        if lease is None or not lease.record.hpke_key:
            return
        holders = self._by_key.get(lease.record.hpke_key, {})
        holders.pop((pool, key), None)
        if not holders:
            self._by_key.pop(lease.record.hpke_key, None)

    def renew(
        self, pool: PoolKey, key: str, lease: Lease, now: dt.datetime, refresh: dt.timedelta
    ) -> Lease:
        """`put`, but publish the new lease only when publishing.to_show says it must be;
        returns the lease to publish."""
        before = self.shown(pool, key)
        self.put(pool, key, lease)
        if before is not None and (before.name, before.url, before.pod_uid) == (
            lease.name,
            lease.url,
            lease.pod_uid,
        ):
            record = publishing.to_show(before.record, lease.record, now, refresh)
            if record is before.record:
                self._shown[pool][key] = before
        return self._shown[pool][key]

    def shown(self, pool: PoolKey, key: str) -> Lease | None:
        """The endpoint's lease as published (what the slices, pods and status carry)."""
        return self._shown.get(pool, {}).get(key)

    def keep(self, pool: PoolKey, keys: Iterable[str]) -> None:
        """Forget the endpoints of `pool` that are gone."""
        wanted = set(keys)
        for key in [k for k in self._pools.get(pool, {}) if k not in wanted]:
            self._unindex(pool, key)
        for book in (self._pools, self._shown):
            held = book.get(pool, {})
            book[pool] = {k: v for k, v in held.items() if k in wanted}

    def forget(self, pool: PoolKey) -> None:
        for key in list(self._pools.get(pool, {})):
            self._unindex(pool, key)
        self._pools.pop(pool, None)
        self._shown.pop(pool, None)
        self._recovered.discard(pool)

    def admitted(self, pool: PoolKey, now: dt.datetime) -> dict[str, Lease]:
        return {k: v for k, v in self._pools.get(pool, {}).items() if v.record.admitted(now)}

    def holder(self, hpke_key: str, now: dt.datetime) -> Holder | None:
        """Which admitted endpoint holds the enclave key (SHA-256 hex), if any."""
        for pool, key in self._by_key.get(hpke_key, {}):
            lease = self.get(pool, key)
            if lease is not None and lease.record.admitted(now):
                return pool, key
        return None

    def claim(self, hpke_key: str, endpoint: Holder, now: dt.datetime) -> Holder | None:
        """Claim the enclave key for `endpoint`; returns the other endpoint that holds or has
        just claimed it (then this one must not be admitted), else None."""
        held = self.holder(hpke_key, now)
        claimed = self._claims.get(hpke_key)
        if claimed is not None and now - claimed[1] < CLAIM_TTL and claimed[0] != endpoint:
            return claimed[0]
        if held is not None and held != endpoint:
            return held
        self._claims[hpke_key] = (endpoint, now)
        self._claimed.setdefault(endpoint, set()).add(hpke_key)
        return None

    def token(self, pool: PoolKey, lease: Lease) -> str | None:
        """The signed admission record of an admitted lease (None: the operator has no key)."""
        record = to_admission(pool, lease)
        if self.signer is None or record is None:
            return None
        return admission_record.sign(record, self.signer.sign)

    def recovered(self, pool: PoolKey) -> bool:
        return pool in self._recovered

    def recover(
        self,
        pool: PoolKey,
        tokens: Iterable[object],
        now: dt.datetime,
        exists: Callable[[AdmissionRecord], str | None],
    ) -> int:
        """Take back the leases this operator had published for `pool`; `exists(record)` is the
        endpoint's key when it still exists as recorded, else None. Returns how many."""
        self._recovered.add(pool)
        if self.signer is None:
            return 0
        found = admission_record.verify_all(
            list(tokens), self.signer.public, pool=_pool_name(pool), warn=log.warning
        )
        count = 0
        for record in found:
            key = exists(record)
            if key is None or not record.admitted(now) or self.get(pool, key) is not None:
                continue
            self.put(pool, key, from_admission(record))
            count += 1
        return count


def to_admission(pool: PoolKey, lease: Lease) -> AdmissionRecord | None:
    """The record to sign for a lease (None: the lease has no times, so it admits nothing)."""
    record = lease.record
    if record.attested_at is None or record.expires_at is None:
        return None
    return AdmissionRecord(
        pool=_pool_name(pool),
        endpoint=lease.name,
        url=lease.url,
        tee=record.tee,
        measurement=record.measurement,
        chip_id=record.chip_id,
        hpke_public_key=record.hpke_public_key,
        signing_public_key=record.signing_public_key,
        attested_at=record.attested_at,
        expires_at=record.expires_at,
        pod_uid=lease.pod_uid,
    )


def from_admission(record: AdmissionRecord) -> Lease:
    return Lease(
        record=Record(
            attested_at=record.attested_at,
            expires_at=record.expires_at,
            tee=record.tee,
            measurement=record.measurement,
            chip_id=record.chip_id,
            hpke_key=_sha256_of_b64(record.hpke_public_key),
            signing_key=_sha256_of_b64(record.signing_public_key),
            hpke_public_key=record.hpke_public_key,
            signing_public_key=record.signing_public_key,
        ),
        name=record.endpoint,
        url=record.url,
        pod_uid=record.pod_uid,
    )


def _sha256_of_b64(text: str) -> str:
    try:
        return hashlib.sha256(base64.b64decode(text, validate=True)).hexdigest()
    except ValueError:
        return ""


def _pool_name(pool: PoolKey) -> str:
    return f"{pool[0]}/{pool[1]}"
