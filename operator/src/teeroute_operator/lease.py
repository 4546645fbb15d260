"""What one endpoint's attestation record becomes after a challenge (pure).

The record is the verdict of the operator's last challenge, kept in its own memory
(leases.LeaseBook; shown on the pod's annotations for people, never read back). Admission is a
lease that runs until `expires_at` (the challenge's issue time + the policy's maximum evidence
age):

- evidence that verifies renews the lease;
- evidence that fails verification ends it at once (and says which checks failed);
- an endpoint that could not be reached keeps its lease until it runs out: a dropped
  packet must not take a healthy miner out, but nothing unverified is ever extended, and the
  lease never outlives the last verified challenge + the pool's current maxEvidenceAge;
- evidence from a different chip than the one first admitted (relay, or the pod's
  evidence coming from another machine) ends the lease and pins the old chip until an
  whoever may edit the MinerPool re-admits the new one (its annotation
  `teeroute.dev/readmit-chip: "<pod or endpoint name>=<chip id>"`; a pod editor cannot);
- verified evidence whose enclave did not get the pool's secrets (check `secrets.release`)
  grants nothing: a new enclave (another HPKE key) stays out, and the enclave holding the
  lease keeps it only until it runs out, unrenewed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from teeroute import admission
from teeroute.admission import parse_time, rfc3339

Annotations = dict[str, str | None]
"""A merge patch of annotations: None removes one."""


@dataclass(frozen=True)
class Record:
    attested_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    tee: str = ""
    measurement: str = ""
    chip_id: str = ""
    hpke_key: str = ""
    signing_key: str = ""
    hpke_public_key: str = ""
    signing_public_key: str = ""
    secrets_released: str = ""
    failure: str = ""
    chip_changed: str = ""

    def admitted(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at > now and not self.chip_changed

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, Any]) -> Record:
        return cls._read(annotations, ANNOTATION_KEYS)

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> Record:
        """From an external endpoint's entry in the pool's status.endpoints."""
        return cls._read(entry, STATUS_KEYS)

    def to_annotations(self) -> Annotations:
        return {k: (v or None) for k, v in self._write(ANNOTATION_KEYS).items()}

    def to_status(self, name: str, url: str) -> dict[str, str]:
        return {"name": name, "url": url, **self._write(STATUS_KEYS)}

    @classmethod
    def _read(cls, source: Mapping[str, Any], keys: Mapping[str, str]) -> Record:
        values: dict[str, Any] = {f: source.get(k) or "" for f, k in keys.items()}
        for field in _TIMES:
            values[field] = parse_time(values[field])
        return cls(**values)

    def _write(self, keys: Mapping[str, str]) -> dict[str, str]:
        out = {}
        for field, key in keys.items():
            value = getattr(self, field)
            out[key] = (rfc3339(value) if value else "") if field in _TIMES else value
        return out


_TIMES = ("attested_at", "expires_at")
ANNOTATION_KEYS = {
    "attested_at": admission.ATTESTED_AT,
    "expires_at": admission.EXPIRES_AT,
    "tee": admission.TEE,
    "measurement": admission.MEASUREMENT,
    "chip_id": admission.CHIP_ID,
    "hpke_key": admission.HPKE_KEY,
    "signing_key": admission.SIGNING_KEY,
    "hpke_public_key": admission.HPKE_PUBLIC_KEY,
    "signing_public_key": admission.SIGNING_PUBLIC_KEY,
    "secrets_released": admission.SECRETS_RELEASED,
    "failure": admission.FAILURE,
    "chip_changed": admission.CHIP_CHANGED,
}
"""Where each field lives on a pod."""
STATUS_KEYS = {
    "attested_at": "attestedAt",
    "expires_at": "expiresAt",
    "tee": "tee",
    "measurement": "measurement",
    "chip_id": "chipId",
    "hpke_key": "hpkeKeySha256",
    "signing_key": "signingKeySha256",
    "hpke_public_key": "hpkePublicKey",
    "signing_public_key": "signingPublicKey",
    "secrets_released": "secretsReleased",
    "failure": "failure",
    "chip_changed": "chipChanged",
}
"""Where each field lives in an external endpoint's status entry (EndpointAttestation)."""


@dataclass(frozen=True)
class Verified:
    """Evidence that passed every performed check."""

    issued_at: dt.datetime
    tee: str
    measurement: str
    chip_id: str
    hpke_key: str
    """SHA-256 (hex) of the attested HPKE public key."""
    signing_key: str
    """SHA-256 (hex) of the attested signing public key."""
    hpke_public_key: str = ""
    """The attested HPKE public key itself (standard base64 of 32 bytes)."""
    signing_public_key: str = ""
    """The attested signing public key itself (standard base64 of 32 bytes)."""
    pinned_release_key: bytes = b""
    """The release key the enclave pins (raw Ed25519 public key, bound into the evidence
    like the others; empty: it pins none, so it accepts no secret release)."""


@dataclass(frozen=True)
class Rejected:
    """Evidence that was answered but did not verify (named checks, or unreadable)."""

    reason: str


@dataclass(frozen=True)
class Unreachable:
    """No evidence: connection refused, timeout, a 5xx from the agent."""

    reason: str


@dataclass(frozen=True)
class ReleaseFailed:
    """Evidence verified, but the pool's secrets could not be delivered to that enclave."""

    reason: str
    """Why (never a secret's value)."""
    hpke_key: str
    """SHA-256 of the HPKE key of the enclave that did not get them."""


Outcome = Verified | Rejected | Unreachable | ReleaseFailed
RELEASE_CHECK = "secrets.release"


@dataclass(frozen=True)
class Transition:
    record: Record
    event: tuple[str, str, str] | None
    """(type, reason, message) worth an Event, if the endpoint's standing changed."""


def next_record(
    previous: Record,
    outcome: Outcome,
    *,
    now: dt.datetime,
    max_age: dt.timedelta,
    readmit_chip: str = "",
) -> Transition:
    if isinstance(outcome, Unreachable):
        failure = f"unreachable: {outcome.reason}"
        expires = _capped(previous, max_age)
        if expires is not None and expires <= now:
            message = f"evidence expired without a refresh ({failure})"
            record = replace(previous, expires_at=None, failure=message)
            return Transition(record, _warn("AttestationExpired", message))
        return Transition(replace(previous, expires_at=expires, failure=failure), None)
    if isinstance(outcome, Rejected):
        failure = f"rejected: {outcome.reason}"
        record = replace(previous, expires_at=None, failure=failure)
        repeated = previous.failure == failure and previous.expires_at is None
        return Transition(record, None if repeated else _warn("AttestationFailed", outcome.reason))
    if isinstance(outcome, ReleaseFailed):
        return _release_failed(previous, outcome, now)
    return _verified(previous, outcome, now=now, max_age=max_age, readmit_chip=readmit_chip)


def _capped(previous: Record, max_age: dt.timedelta) -> dt.datetime | None:
    """The lease's expiry, never later than its last verification + the current max age (a
    pool whose maxEvidenceAge was shortened shortens the leases it already granted)."""
    if previous.expires_at is None or previous.attested_at is None:
        return None
    return min(previous.expires_at, previous.attested_at + max_age)


def chip_blocked(previous: Record, outcome: Verified, readmit_chip: str = "") -> bool:
    """The evidence comes from another chip than the pinned one, not re-admitted: no lease
    (and so no secrets) for it."""
    pinned = previous.chip_id
    return bool(pinned) and outcome.chip_id != pinned and readmit_chip != outcome.chip_id


def _release_failed(previous: Record, outcome: ReleaseFailed, now: dt.datetime) -> Transition:
    failure = f"{RELEASE_CHECK}: {outcome.reason}"
    same_enclave = previous.hpke_key == outcome.hpke_key
    if same_enclave and previous.admitted(now):
        record = replace(previous, failure=failure)  # runs out, unrenewed
    else:
        record = replace(previous, expires_at=None, failure=failure)
    repeated = previous.failure == failure
    return Transition(record, None if repeated else _warn("SecretReleaseFailed", outcome.reason))


def _verified(
    previous: Record,
    outcome: Verified,
    *,
    now: dt.datetime,
    max_age: dt.timedelta,
    readmit_chip: str,
) -> Transition:
    pinned = previous.chip_id
    if chip_blocked(previous, outcome, readmit_chip):
        changed = f"{_short(pinned)} -> {_short(outcome.chip_id)}"
        message = (
            f"chip identity changed ({changed}); to re-admit it, annotate the MinerPool "
            f"{admission.READMIT}: <name>={outcome.chip_id}"
        )
        record = replace(previous, expires_at=None, chip_changed=changed, failure=message)
        event = None if previous.chip_changed == changed else _warn("ChipChanged", message)
        return Transition(record, event)
    record = Record(
        attested_at=now,
        expires_at=outcome.issued_at + max_age,
        tee=outcome.tee,
        measurement=outcome.measurement,
        chip_id=outcome.chip_id,
        hpke_key=outcome.hpke_key,
        signing_key=outcome.signing_key,
        hpke_public_key=outcome.hpke_public_key,
        signing_public_key=outcome.signing_public_key,
        secrets_released=previous.secrets_released,
    )
    if previous.admitted(now):
        return Transition(record, None)
    return Transition(
        record,
        (
            "Normal",
            "Attested",
            f"{outcome.tee} evidence verified, measurement {_short(outcome.measurement)}",
        ),
    )


def _warn(reason: str, message: str) -> tuple[str, str, str]:
    return ("Warning", reason, message)


def _short(hex_id: str) -> str:
    return hex_id[:16] + "…" if len(hex_id) > 16 else hex_id
