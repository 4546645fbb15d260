"""Valid wire v2 messages to mutate, made with the SDK at import: frames, a signed HELLO, a
WELCOME, a ONESHOT, a REQUEST and its answer's CHUNKs, RECEIPT and ROOT payloads and a proof
bundle. The two ends of the session are built from one fixed master secret, so a test can make
a fresh end (a fresh replay window) per example and open the same valid bytes."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from teeroute.sealing import hpke, merkle
from teeroute.sealing.frames import FrameType, decode_one, encode
from teeroute.sealing.receipt_mac import GATEWAY_TAG, RootBatcher, issue_receipt, parse_receipt
from teeroute.sealing.roots import parse_root, proof_bundle
from teeroute.sealing.session import Session, SessionParams, initiate, oneshot

NOW = 1_800_000_000
ENCLAVE_PRIVATE, ENCLAVE_PUBLIC = hpke.generate_key_pair()
SIGNING_KEY = ed25519.Ed25519PrivateKey.generate()
SIGNING_PUBLIC = SIGNING_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
SIGNING_SHA256 = hashlib.sha256(SIGNING_PUBLIC).hexdigest()
HPKE_SHA256 = hashlib.sha256(ENCLAVE_PUBLIC).hexdigest()
GATEWAY_KEY = ed25519.Ed25519PrivateKey.generate()
GATEWAY_PUBLIC = GATEWAY_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

PARAMS = SessionParams(
    session_id=bytes(range(16)),
    enclave_hpke_sha256=HPKE_SHA256,
    enclave_signing_sha256=SIGNING_SHA256,
    attested={"tee": "sev-snp", "measurement": "ab" * 48},
    initiator="gateway:" + hashlib.sha256(GATEWAY_PUBLIC).hexdigest(),
    created_at=NOW,
    expires_at=NOW + 3600,
)
TRANSCRIPT = PARAMS.transcript()
HELLO = decode_one(initiate(ENCLAVE_PUBLIC, PARAMS, GATEWAY_KEY.sign)[0]).payload
ONESHOT = decode_one(oneshot(ENCLAVE_PUBLIC, PARAMS, b'{"path":"/v1/x"}', b"{}")[0]).payload

MASTER = hashlib.sha256(b"fuzz master").digest()
META, BODY = b'{"path":"/v1/chat/completions","max_tokens":16}', b'{"messages":[]}'


def initiator() -> Session:
    return Session(PARAMS, MASTER, initiator=True)


def enclave() -> Session:
    return Session(PARAMS, MASTER, initiator=False)


WELCOME = PARAMS.session_id + enclave().confirm_tag()
_REQUEST_FRAME, _EXCHANGE = initiator().seal_request(META, BODY, NOW)
REQUEST = decode_one(_REQUEST_FRAME).payload
_REPLY = enclave().open_request(REQUEST, NOW)[2]
CHUNKS = [
    decode_one(_REPLY.chunk(b"hello ")).payload,
    decode_one(_REPLY.chunk(b"world", True)).payload,
]
REQUEST_COUNTER = 0
STREAM = b"".join(
    encode(kind, payload)
    for kind, payload in (
        (FrameType.HELLO, HELLO),
        (FrameType.REQUEST, REQUEST),
        (FrameType.CHUNK, CHUNKS[0]),
        (FrameType.CHUNK, CHUNKS[1]),
    )
)

RECEIPT_KEY = hashlib.sha256(b"fuzz receipt key").digest()
_BATCHER = RootBatcher(
    session_id=PARAMS.session_id, sign=SIGNING_KEY.sign, signing_public=SIGNING_PUBLIC,
    hpke_key_sha256=HPKE_SHA256, batch_size=3,
)  # fmt: skip


def receipt_fields(n: int) -> dict[str, Any]:
    return {
        "request_id": f"req-{n}", "model": "m", "served_model": "m-8b", "input_tokens": 200,
        "output_tokens": 10 + n, "usage_source": "engine", "status": 200, "complete": True,
        "request_sha256": "b2" * 32, "response_sha256": "c3" * 32,
        "hpke_key_sha256": HPKE_SHA256, "signing_key_sha256": SIGNING_SHA256,
        "issued_at": "2026-12-05T01:00:00Z",
    }  # fmt: skip


def _issue(n: int) -> tuple[bytes, bytes | None]:
    frame, root = issue_receipt(_BATCHER, receipt_fields(n), [(GATEWAY_TAG, RECEIPT_KEY)], NOW)
    return decode_one(frame).payload, None if root is None else decode_one(root).payload


RECEIPTS = [_issue(n)[0] for n in range(2)]
_last, _root = _issue(2)
RECEIPTS.append(_last)
assert _root is not None
ROOT = _root
_SIGNED_ROOT = parse_root(ROOT)
RECEIPT = parse_receipt(RECEIPTS[1])[0]
BUNDLE = proof_bundle(
    RECEIPT, _SIGNED_ROOT, merkle.inclusion_proof(_SIGNED_ROOT.leaves, RECEIPT.index)
).encode()
