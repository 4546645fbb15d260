"""Signed admission records: the only thing a router may route on and seal to.

The operator verifies each endpoint's evidence itself; what it concluded (which pool, which
address or URL, which attested keys, until when) it signs with its own Ed25519 key as an
admission record and publishes the records next to the pool (the attested EndpointSlice's
annotation `teeroute.dev/admission-records`, or an external endpoint's entry in the pool's
status). The gateway pins the operator's public key and takes an endpoint's address, TEE,
measurement and HPKE key from a record whose signature verifies and whose pool is the pool it
was published for — never from pod annotations, labels or slice entries, which a namespace
editor can write (docs/threat-model.md, "forged admission").

A record is a compact token: `base64url(canonical JSON) "." base64url(signature)`, the
signature over a domain-separated prefix and the JSON bytes, so it can never be mistaken for a
secret release or a receipt signed by the same key. Tokens are bounded (`MAX_TOKEN_BYTES`)
before anything is decoded.

    sign(record, signer) -> str
    verify(token, public_key, *, pool) -> AdmissionRecord   raises RecordInvalid(check, why)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.admission import parse_time, rfc3339
from teeroute.errors import TeerouteError

VERSION = 1
SIGNATURE_CONTEXT = b"teeroute/v1 admission-record\0"
RECORDS_ANNOTATION = "teeroute.dev/admission-records"
"""On the pool's attested EndpointSlice: a JSON list of tokens, one per admitted pod."""
MAX_TOKEN_BYTES = 4096
MAX_RECORDS_BYTES = 200 * 1024
"""The most bytes of tokens read from one slice (an annotation holds at most 256 KiB)."""


class RecordInvalid(TeerouteError):
    """A record that must not be routed on; `check` names the check that failed."""

    def __init__(self, check: str, why: str) -> None:
        super().__init__(f"{check}: {why}")
        self.check = check


@dataclass(frozen=True)
class AdmissionRecord:
    pool: str
    """`<namespace>/<name>` of the pool the operator admitted the endpoint into."""
    endpoint: str
    """The endpoint's name within the pool: the pod's name, or the external endpoint's."""
    url: str
    """Where it is reached: `http://<pod IP>:<agent port>` or the external URL."""
    tee: str
    measurement: str
    chip_id: str
    hpke_public_key: str
    """Standard base64 of the attested X25519 key that requests are sealed to."""
    signing_public_key: str
    """Standard base64 of the attested Ed25519 key that signs the enclave's receipts."""
    attested_at: dt.datetime
    """When the operator's own challenge last verified this endpoint's evidence."""
    expires_at: dt.datetime
    """That challenge's nonce issue time + the pool's maxEvidenceAge: no later."""
    pod_uid: str = ""

    def admitted(self, now: dt.datetime) -> bool:
        return self.expires_at > now

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": VERSION, **asdict(self)}
        out["attested_at"] = rfc3339(self.attested_at)
        out["expires_at"] = rfc3339(self.expires_at)
        return out


_FIELDS = {f.name for f in fields(AdmissionRecord)}


def sign(record: AdmissionRecord, sign_bytes: Callable[[bytes], bytes]) -> str:
    """The record as a token, signed with the operator's key (`Signer.sign`)."""
    body = _canonical(record.to_json())
    signature = sign_bytes(SIGNATURE_CONTEXT + body)
    return f"{_b64(body)}.{_b64(signature)}"


def verify(token: Any, public_key: bytes, *, pool: str) -> AdmissionRecord:
    """The record in `token` if the operator's key signed it for `pool`; expiry is the
    caller's to check against its own clock (`AdmissionRecord.admitted`)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        raise RecordInvalid("record.format", f"not a token of at most {MAX_TOKEN_BYTES} bytes")
    body_text, dot, signature_text = token.partition(".")
    if not dot:
        raise RecordInvalid("record.format", "expected <body>.<signature>")
    body, signature = _unb64(body_text), _unb64(signature_text)
    try:
        key = ed25519.Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(signature, SIGNATURE_CONTEXT + body)
    except (InvalidSignature, ValueError):
        raise RecordInvalid("record.signature", "not signed by the operator's key") from None
    record = _parse(body)
    if record.pool != pool:
        raise RecordInvalid("record.pool", f"signed for pool {record.pool}, published for {pool}")
    return record


def verify_all(
    tokens: Any, public_key: bytes, *, pool: str, warn: Callable[[str], None]
) -> list[AdmissionRecord]:
    """Every record in a list of tokens that verifies; each one that does not is reported."""
    found = []
    for token in tokens if isinstance(tokens, list) else []:
        try:
            found.append(verify(token, public_key, pool=pool))
        except RecordInvalid as exc:
            warn(f"admission record for {pool} ignored: {exc}")
    return found


def load_list(raw: str) -> list[Any]:
    """The token list of a slice annotation (bounded; anything else: empty)."""
    if not raw or len(raw) > MAX_RECORDS_BYTES:
        return []
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: deep nesting
        return []
    return value if isinstance(value, list) else []


def dump_list(tokens: list[str]) -> str:
    return json.dumps(sorted(tokens), separators=(",", ":"))


def _parse(body: bytes) -> AdmissionRecord:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise RecordInvalid("record.format", "the body is not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        raise RecordInvalid("record.version", f"expected version {VERSION}")
    values = {k: v for k, v in doc.items() if k in _FIELDS}
    if set(values) != _FIELDS or not all(isinstance(v, str) for v in values.values()):
        raise RecordInvalid("record.format", "missing or mistyped fields")
    return _with_times(values)


def _with_times(values: Mapping[str, str]) -> AdmissionRecord:
    attested, expires = parse_time(values["attested_at"]), parse_time(values["expires_at"])
    if attested is None or expires is None:
        raise RecordInvalid("record.format", "unreadable times")
    rest = {k: v for k, v in values.items() if k not in ("attested_at", "expires_at")}
    return AdmissionRecord(**rest, attested_at=attested, expires_at=expires)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise RecordInvalid("record.format", "not base64url") from None
