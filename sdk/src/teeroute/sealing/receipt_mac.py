"""Wire v2 usage receipts: a canonical body authenticated by MAC tags (docs/sealed-mode.md,
"Receipts v2").

The enclave tags each receipt with the receipt key of the session the request came through
(HMAC-SHA256, a microsecond to check) instead of signing it; what a third party can check
later comes from the signed Merkle roots over the receipts (roots.py). Who calls what:

    receipt_frame(fields, keys)        enclave: body + one tag per (kind, key) -> RECEIPT frame
    issue_receipt(batcher, ...)        enclave: the same, numbered by the session's batcher,
                                       plus the ROOT frame when a batch is due
    parse_receipt(payload)             gateway, client: (ReceiptV2, {kind: tag}), bounded
    check_tag(receipt, tags, kind, key)      "receipt.mac"
    verify_receipt_v2(receipt, ...)    what the verifier saw, each a named check

RECEIPT payload: u32 body length | body | u8 n | n x (u8 kind | 32-byte tag), with
tag = HMAC-SHA256(key, b"teeroute/v2 receipt" + body). Kind 1: the gateway session's
receipt_key; kind 2: the client session's (a client-sealed request).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from teeroute.sealing.batcher import RootBatcher
from teeroute.sealing.errors import ReceiptInvalid
from teeroute.sealing.frames import FrameType, encode
from teeroute.sealing.receipt_body import (
    MAX_BODY,
    ReceiptV2,
    iso_utc,
    parse_body,
    receipt_body,
)
from teeroute.sealing.roots import SignedRoot, parse_root, proof_bundle, verify_bundle
from teeroute.sealing.tracker import RootTracker

__all__ = [
    "CLIENT_TAG",
    "GATEWAY_TAG",
    "ReceiptV2",
    "RootBatcher",
    "RootTracker",
    "SignedRoot",
    "check_tag",
    "iso_utc",
    "issue_receipt",
    "parse_receipt",
    "parse_root",
    "proof_bundle",
    "receipt_body",
    "receipt_frame",
    "receipt_payload",
    "receipt_tag",
    "verify_bundle",
    "verify_receipt_v2",
]

TAG_CONTEXT = b"teeroute/v2 receipt"
TAG_LEN = 32
MAX_TAGS = 4
GATEWAY_TAG = 1
CLIENT_TAG = 2
TAG_KINDS = (GATEWAY_TAG, CLIENT_TAG)
_LEN = struct.Struct(">I")


def receipt_tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, TAG_CONTEXT + body, hashlib.sha256).digest()


def _check_kinds(keys: Sequence[tuple[int, bytes]]) -> None:
    kinds = [kind for kind, _ in keys]
    if len(kinds) > MAX_TAGS or len(set(kinds)) != len(kinds) or set(kinds) - set(TAG_KINDS):
        raise ValueError(f"tags: at most {MAX_TAGS}, distinct, of kinds {TAG_KINDS}")


def receipt_payload(body: bytes, keys: Sequence[tuple[int, bytes]]) -> bytes:
    """The RECEIPT payload of a canonical body, tagged with each (kind, key)."""
    _check_kinds(keys)
    tags = b"".join(bytes([kind]) + receipt_tag(key, body) for kind, key in keys)
    return _LEN.pack(len(body)) + body + bytes([len(keys)]) + tags


def receipt_frame(fields: Mapping[str, Any], keys: Sequence[tuple[int, bytes]]) -> bytes:
    """A RECEIPT frame: the receipt's canonical body (checked) and a tag for each (kind,
    key) — the key being the receipt_key of the session of that kind."""
    return encode(FrameType.RECEIPT, receipt_payload(receipt_body(fields), keys))


def issue_receipt(
    batcher: RootBatcher, fields: Mapping[str, Any], keys: Sequence[tuple[int, bytes]], now: float
) -> tuple[bytes, bytes | None]:
    """The enclave's one call per answer: numbers the receipt in the batcher's session
    (session_id, index), tags it, and adds it to the batch. Returns the RECEIPT frame and
    the ROOT frame when the batch is due (else None). Safe from several threads."""
    _check_kinds(keys)  # before the receipt takes its number: a refusal leaves no gap
    body, root = batcher.issue(fields, now)
    return encode(FrameType.RECEIPT, receipt_payload(body, keys)), root


def parse_receipt(payload: bytes) -> tuple[ReceiptV2, dict[int, bytes]]:
    """A RECEIPT payload read: layout and sizes checked before anything is parsed
    ("receipt.frame"), then the body's fields ("receipt.format", naming the field)."""
    if len(payload) < _LEN.size:
        raise ReceiptInvalid("receipt.frame", "shorter than the body length")
    (size,) = _LEN.unpack_from(payload)
    if size > MAX_BODY:
        raise ReceiptInvalid("receipt.frame", f"body of {size} bytes, over {MAX_BODY}")
    end = _LEN.size + size
    if len(payload) < end + 1:
        raise ReceiptInvalid("receipt.frame", "cut off in the body")
    tags = _tags(payload[end + 1 :], payload[end])
    return parse_body(payload[_LEN.size : end]), tags


def _tags(raw: bytes, count: int) -> dict[int, bytes]:
    if count > MAX_TAGS:
        raise ReceiptInvalid("receipt.frame", f"{count} tags, over {MAX_TAGS}")
    if len(raw) != count * (1 + TAG_LEN):
        raise ReceiptInvalid("receipt.frame", f"the tags are not {count} x {1 + TAG_LEN} bytes")
    tags: dict[int, bytes] = {}
    for at in range(0, len(raw), 1 + TAG_LEN):
        kind = raw[at]
        if kind not in TAG_KINDS or kind in tags:
            raise ReceiptInvalid("receipt.frame", f"tag kind {kind} unknown or repeated")
        tags[kind] = raw[at + 1 : at + 1 + TAG_LEN]
    return tags


def check_tag(receipt: ReceiptV2, tags: Mapping[int, bytes], kind: int, key: bytes) -> None:
    """ReceiptInvalid("receipt.mac") unless the tag of `kind` was made with `key` over the
    receipt's body (compared in constant time)."""
    tag = tags.get(kind)
    if tag is None:
        raise ReceiptInvalid("receipt.mac", f"no tag of kind {kind}")
    if not hmac.compare_digest(tag, receipt_tag(key, receipt.body)):
        raise ReceiptInvalid("receipt.mac", f"the kind {kind} tag is not this session's")


def verify_receipt_v2(
    receipt: ReceiptV2,
    *,
    session_id: bytes | None = None,
    index: int | None = None,
    request_id: str | None = None,
    request_sha256: str | None = None,
    response_sha256: str | None = None,
    hpke_key_sha256: str | None = None,
    signing_key_sha256: str | None = None,
) -> ReceiptV2:
    """The receipt, if it covers what the caller saw; a `None` is a check the caller cannot
    make (a client does not know the gateway's session or request id; a gateway passing a
    client's frames through does not know the request's digest)."""
    expected = {
        "receipt.session": (receipt.session_id, session_id.hex() if session_id else None),
        "receipt.index": (receipt.index, index),
        "receipt.request_id": (receipt.request_id, request_id),
        "receipt.request": (receipt.request_sha256, request_sha256),
        "receipt.response": (receipt.response_sha256, response_sha256),
        "receipt.hpke_key": (receipt.hpke_key_sha256, hpke_key_sha256),
        "receipt.signing_key": (receipt.signing_key_sha256, signing_key_sha256),
    }
    for check, (seen, wanted) in expected.items():
        if wanted is not None and seen != wanted:
            raise ReceiptInvalid(check, "does not match what the verifier saw")
    return receipt
