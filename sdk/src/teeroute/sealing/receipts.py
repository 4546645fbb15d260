"""Usage receipts (docs/sealed-mode.md, section 3): what the enclave says it served, signed
by its attested Ed25519 key, so billing needs nobody's word but the enclave's.

The receipt names the sealed request and response it covers by digest, so it cannot be moved
to another request, and carries the signing public key, which a verifier accepts only if its
SHA-256 is the fingerprint the attestation vouched for.

    sign_receipt(...)      the enclave side
    verify_receipt(...)    gateway and client: every check named (ReceiptInvalid.check)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.sealing.envelope import VERSION, b64, canonical, key_id, unb64
from teeroute.sealing.errors import EnvelopeInvalid, ReceiptInvalid

SIGNATURE_CONTEXT = b"teeroute/v1 receipt\x00"
MAX_TOKENS = 10**9
MAX_TEXT = 256
USAGE_SOURCES = ("engine", "counted")


@dataclass(frozen=True)
class Receipt:
    request_id: str
    model: str
    served_model: str
    input_tokens: int
    output_tokens: int
    usage_source: str
    status: int
    complete: bool
    hpke_key_sha256: str
    signing_key_sha256: str
    request_sha256: str
    response_sha256: str
    issued_at: str
    signing_key: str
    signature: str = ""

    def signed_part(self) -> bytes:
        return _signed(self._fields(signed_only=True))

    def to_json(self) -> dict[str, Any]:
        return {"v": VERSION, **self._fields()}

    def _fields(self, signed_only: bool = False) -> dict[str, Any]:
        """The fields as a dict (shallow: they are all str, int or bool)."""
        names = _SIGNED_NAMES if signed_only else _NAMES
        return {name: getattr(self, name) for name in names}

    def text(self) -> str:
        """The receipt as stored and sent: canonical JSON."""
        return canonical(self.to_json()).decode()


_NAMES = tuple(f.name for f in fields(Receipt))
_SIGNED_NAMES = tuple(name for name in _NAMES if name != "signature")


def sign_receipt(
    *,
    sign: Callable[[bytes], bytes],
    signing_public: bytes,
    hpke_public: bytes,
    request_id: str,
    model: str,
    served_model: str,
    input_tokens: int,
    output_tokens: int,
    usage_source: str,
    status: int,
    complete: bool,
    request_sha256: str,
    response_sha256: str,
    now: dt.datetime,
) -> Receipt:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "model": model,
        "served_model": served_model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "usage_source": usage_source,
        "status": status,
        "complete": complete,
        "hpke_key_sha256": key_id(hpke_public),
        "signing_key_sha256": key_id(signing_public),
        "request_sha256": request_sha256,
        "response_sha256": response_sha256,
        "issued_at": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "signing_key": b64(signing_public),
    }
    _check_format({"v": VERSION, **fields, "signature": ""})
    return Receipt(**fields, signature=b64(sign(_signed(fields))))


def _signed(fields: Mapping[str, Any]) -> bytes:
    """The bytes signed: every field but the signature, canonical, domain-separated."""
    return SIGNATURE_CONTEXT + canonical({"v": VERSION, **fields})


def parse_receipt(raw: bytes | str | Mapping[str, Any]) -> Receipt:
    """Reads a receipt's fields (format only; nothing about who signed it)."""
    doc = _load(raw) if isinstance(raw, bytes | str) else dict(raw)
    _check_format(doc)
    doc.pop("v")
    return Receipt(**doc)


def verify_receipt(
    raw: bytes | str | Mapping[str, Any],
    *,
    signing_key_sha256: str,
    request_id: str | None = None,
    request_sha256: str | None = None,
    response_sha256: str | None = None,
    hpke_key_sha256: str | None = None,
) -> Receipt:
    """The receipt, if it was signed by the attested key and covers what the caller saw.

    The `None` arguments are checks the caller cannot make (a client does not know the
    gateway's request id until the answer; a gateway passing frames through has the digests).
    """
    receipt = parse_receipt(raw)
    public = _signing_key(receipt, signing_key_sha256)
    try:
        public.verify(unb64(receipt.signature, "receipt.signature"), receipt.signed_part())
    except (InvalidSignature, EnvelopeInvalid):
        raise ReceiptInvalid("receipt.signature", "signature does not verify") from None
    expected = {
        "receipt.request_id": (receipt.request_id, request_id),
        "receipt.request": (receipt.request_sha256, request_sha256),
        "receipt.response": (receipt.response_sha256, response_sha256),
        "receipt.hpke_key": (receipt.hpke_key_sha256, hpke_key_sha256),
    }
    for check, (seen, wanted) in expected.items():
        if wanted is not None and seen != wanted:
            raise ReceiptInvalid(check, "does not match the request it was returned for")
    return receipt


def _signing_key(receipt: Receipt, attested_sha256: str) -> ed25519.Ed25519PublicKey:
    try:
        raw = unb64(receipt.signing_key, "receipt.signing_key")
        public = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except (EnvelopeInvalid, ValueError):
        raise ReceiptInvalid("receipt.signing_key", "not an Ed25519 public key") from None
    if key_id(raw) != attested_sha256 or receipt.signing_key_sha256 != attested_sha256:
        raise ReceiptInvalid("receipt.signing_key", "not the attested signing key")
    return public


def _load(raw: bytes | str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise ReceiptInvalid("receipt.format", "not valid JSON") from None
    if not isinstance(doc, dict):
        raise ReceiptInvalid("receipt.format", "expected a JSON object")
    return doc


_TEXT_FIELDS = (
    "request_id",
    "model",
    "served_model",
    "hpke_key_sha256",
    "signing_key_sha256",
    "request_sha256",
    "response_sha256",
    "issued_at",
    "signing_key",
    "signature",
)
_COUNT_FIELDS = ("input_tokens", "output_tokens")
_FIELDS = {"v", "usage_source", "status", "complete", *_TEXT_FIELDS, *_COUNT_FIELDS}


def _check_format(doc: Mapping[str, Any]) -> None:
    problem = _format_problem(doc)
    if problem:
        raise ReceiptInvalid("receipt.format", problem)


def _format_problem(doc: Mapping[str, Any]) -> str:
    if doc.get("v") != VERSION:
        return f"version is not {VERSION!r}"
    if set(doc) != _FIELDS:
        return "fields differ from the v1 receipt"
    for name in _TEXT_FIELDS:
        if not isinstance(doc[name], str) or len(doc[name]) > MAX_TEXT:
            return f"{name} is not a string of at most {MAX_TEXT} characters"
    for name in _COUNT_FIELDS:
        value = doc[name]
        if type(value) is not int or not 0 <= value <= MAX_TOKENS:
            return f"{name} is not a count"
    if doc["usage_source"] not in USAGE_SOURCES:
        return "usage_source is not one of " + ", ".join(USAGE_SOURCES)
    if type(doc["status"]) is not int or type(doc["complete"]) is not bool:
        return "status or complete has the wrong type"
    return ""
