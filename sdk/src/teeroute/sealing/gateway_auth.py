"""The gateway's authorization of one request to one enclave (docs/sealed-mode.md, section 8).

An enclave agent answers inference only to the gateway: anyone else reaching its port (another
pod, a namespace editor's debug pod, a client routing around billing) would otherwise be
served, with a relay's released upstream key at that. The gateway holds an Ed25519 *gateway
key*; agents pin its public half (TEEROUTE_AGENT_GATEWAY_KEYS). Every request the gateway sends
to an agent carries

    teeroute-gateway-auth: v1.<unix ms>.<nonce, base64url>.<signature, base64url>

where the signature covers CONTEXT, the method, the path, the SHA-256 of the exact body, the
time, the nonce and the SHA-256 of the destination enclave's attested HPKE key. The last binds
the authorization to the enclave the gateway verified: a header captured on its way to one
enclave (by that miner's host, say) opens no other. The agent refuses a stale time and a
nonce it has seen (its replay guard), so a captured header is not reusable at its own
enclave either.

    sign(private, method, path, body, hpke_key_sha256, now_ms) -> header value   the gateway
    verify(value, pinned, method, path, body, hpke_key_sha256, now_ms, window_ms)  the agent
        -> Authorization, or Refused (kind: gateway_auth_missing | _invalid | _stale)

Pure: no clock, no I/O. Errors name the check and never carry key bytes or body content.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

HEADER = "teeroute-gateway-auth"
VERSION = "v1"
CONTEXT = b"teeroute/v1 gateway-request\x00"
NONCE_BYTES = 16
KEY_BYTES = 32
SIGNATURE_BYTES = 64
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
MAX_HEADER = 256
"""Longest header value read (a valid one is about 130 characters)."""


class Refused(Exception):
    """A request without a valid gateway authorization: status, OpenAI error type, message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


@dataclass(frozen=True, slots=True)
class Authorization:
    """A verified header: when it was made and its nonce (for the replay guard)."""

    issued_ms: int
    nonce: bytes


def message(
    method: str, path: str, body: bytes, issued_ms: int, nonce: bytes, hpke_key_sha256: str
) -> bytes:
    """What the gateway signs: each field on its own line after the domain-separated context
    (method, path and key id hold no newline; the body enters only as its hash)."""
    fields = (method, path, hashlib.sha256(body).hexdigest(), str(issued_ms), _b64(nonce))
    return CONTEXT + "\n".join((*fields, hpke_key_sha256.lower())).encode()


def sign(
    private: ed25519.Ed25519PrivateKey,
    method: str,
    path: str,
    body: bytes,
    hpke_key_sha256: str,
    now_ms: int,
    nonce: bytes | None = None,
) -> str:
    """The header value authorizing this request to the enclave holding `hpke_key_sha256`."""
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    signature = private.sign(message(method, path, body, now_ms, nonce, hpke_key_sha256))
    return f"{VERSION}.{now_ms}.{_b64(nonce)}.{_b64(signature)}"


def verify(
    value: str | None,
    pinned: Sequence[bytes],
    method: str,
    path: str,
    body: bytes,
    hpke_key_sha256: str,
    now_ms: int,
    window_ms: int,
) -> Authorization:
    """The authorization in `value` if a pinned key signed this very request, to this
    enclave, within `window_ms` of `now_ms`; Refused otherwise."""
    issued_ms, nonce, signature = parse(value)
    if abs(now_ms - issued_ms) > window_ms:
        off = (now_ms - issued_ms) // 1000
        where = f"{off} s behind" if off >= 0 else f"{-off} s ahead of"
        raise Refused(
            401,
            "gateway_auth_stale",
            f"{HEADER}: made {where} the enclave's clock, outside its {window_ms // 1000} s window",
        )
    signed = message(method, path, body, issued_ms, nonce, hpke_key_sha256)
    if not any(_valid(key, signature, signed) for key in pinned):
        raise Refused(
            401,
            "gateway_auth_invalid",
            f"{HEADER}: not signed by a gateway key this enclave pins, for this request "
            "(method, path, body) to this enclave's key",
        )
    return Authorization(issued_ms, nonce)


def parse(value: str | None) -> tuple[int, bytes, bytes]:
    """Time, nonce and signature from a header value; Refused when absent or malformed."""
    if not value:
        raise Refused(
            401, "gateway_auth_missing", f"{HEADER}: this enclave answers only the gateway"
        )
    parts = value.strip().split(".") if len(value) <= MAX_HEADER else []
    try:
        version, issued, nonce, signature = parts
        issued_ms = int(issued) if issued.isascii() and issued.isdigit() else -1
        raw_nonce, raw_signature = _unb64(nonce), _unb64(signature)
    except (ValueError, binascii.Error):
        issued_ms, version, raw_nonce, raw_signature = -1, "", b"", b""
    if (
        version != VERSION
        or issued_ms < 0
        or len(raw_nonce) != NONCE_BYTES
        or len(raw_signature) != SIGNATURE_BYTES
    ):
        raise Refused(
            401,
            "gateway_auth_invalid",
            f"{HEADER}: expected {VERSION}.<unix ms>.<nonce>.<signature> (base64url)",
        )
    return issued_ms, raw_nonce, raw_signature


def parse_keys(text: str) -> tuple[bytes, ...]:
    """Comma-separated standard base64 of raw Ed25519 public keys (several: a rotation)."""
    keys = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            raw = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("expected standard base64 of raw Ed25519 public keys") from None
        if len(raw) != KEY_BYTES:
            raise ValueError(f"expected {KEY_BYTES} bytes per key (a raw Ed25519 public key)")
        keys.append(raw)
    return tuple(keys)


def _valid(key: bytes, signature: bytes, signed: bytes) -> bool:
    try:
        _public(key).verify(signature, signed)
    except (InvalidSignature, ValueError):
        return False
    return True


@functools.lru_cache(maxsize=16)
def _public(key: bytes) -> ed25519.Ed25519PublicKey:
    """The pinned keys are few and fixed: each is loaded once, not per request."""
    return ed25519.Ed25519PublicKey.from_public_bytes(key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _BASE64URL.fullmatch(text):  # the decoder would skip stray characters
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
