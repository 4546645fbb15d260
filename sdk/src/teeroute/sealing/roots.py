"""Signed Merkle roots over v2 receipts, and the proof bundles that show a receipt to anyone.

The enclave signs, with its attested Ed25519 key, one root per batch of its receipts in a
gateway session (every K receipts or S seconds); the gateway checks the signature once per
batch, checks the root against the batch's leaf hashes and the receipts it holds, and keeps
one inclusion proof per receipt, which `teeroute verify receipt --proof` checks offline
(docs/sealed-mode.md, "Receipts v2").

    SignedRoot / parse_root(payload)    the ROOT frame's document and signature, bounded
    sign_root(...)                      the ROOT payload (RootBatcher, batcher.py, calls it)
    proof_bundle(...), verify_bundle(bundle, attested_signing_sha256)

Root document (canonical JSON): {"v": 2, "session_id", "first_index", "count", "root" (hex),
"signing_public" (base64), "hpke_key_sha256", "signed_at"}. ROOT payload: u16 document
length | document | Ed25519 signature (64) over b"teeroute/v2 root" + document | the batch's
`count` leaf hashes (32 bytes each; unsigned, but they must hash to the signed root). The
leaves let the gateway check the root and prove the receipts it holds even when it never got
some of the batch's receipts (a client that left mid-answer).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.sealing import merkle
from teeroute.sealing.errors import ReceiptInvalid
from teeroute.sealing.receipt_body import (
    MAX_BODY,
    VERSION,
    ReceiptV2,
    canonical,
    iso_utc,
    parse_body,
)

ROOT_CONTEXT = b"teeroute/v2 root"
SIGNATURE_LEN = 64
MAX_DOC = 1024
MAX_BATCH = 4096
"""The most receipts one root may cover (a ROOT frame carries their leaf hashes)."""
MAX_BUNDLE = 64 * 1024
_DOC_LEN = struct.Struct(">H")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SESSION = re.compile(r"[0-9a-f]{32}")
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@dataclass(frozen=True, slots=True)
class SignedRoot:
    session_id: str
    first_index: int
    count: int
    root: bytes
    signing_public: bytes
    hpke_key_sha256: str
    signed_at: str
    doc: bytes  # the exact signed document
    signature: bytes
    leaves: tuple[bytes, ...] = ()  # the batch's leaf hashes, as the ROOT frame carries them

    @property
    def signing_key_sha256(self) -> str:
        return hashlib.sha256(self.signing_public).hexdigest()

    def covers(self, index: int) -> bool:
        return self.first_index <= index < self.first_index + self.count

    def verify(self, attested_signing_sha256: str | None) -> None:
        """root.key: the signing key is not the attested one; root.signature: the document
        was not signed by it. With None the key is the document's own (say which, then)."""
        if attested_signing_sha256 is not None and (
            self.signing_key_sha256 != attested_signing_sha256
        ):
            raise ReceiptInvalid("root.key", "the root is not signed by the attested key")
        try:
            public = ed25519.Ed25519PublicKey.from_public_bytes(self.signing_public)
            public.verify(self.signature, ROOT_CONTEXT + self.doc)
        except (InvalidSignature, ValueError):
            raise ReceiptInvalid("root.signature", "signature does not verify") from None


def sign_root(
    *,
    sign: Callable[[bytes], bytes],
    signing_public: bytes,
    session_id: bytes,
    first_index: int,
    leaves: list[bytes],
    hpke_key_sha256: str,
    now: float,
) -> bytes:
    """The ROOT payload over `leaves`, numbered from `first_index` in the session."""
    doc = canonical({
        "v": VERSION, "session_id": session_id.hex(), "first_index": first_index,
        "count": len(leaves), "root": merkle.root(leaves).hex(),
        "signing_public": b64(signing_public), "hpke_key_sha256": hpke_key_sha256,
        "signed_at": iso_utc(now),
    })  # fmt: skip
    signature = sign(ROOT_CONTEXT + doc)
    return _DOC_LEN.pack(len(doc)) + doc + signature + b"".join(leaves)


def parse_root(payload: bytes) -> SignedRoot:
    """A ROOT payload read (format only: `SignedRoot.verify` checks who signed it, the
    tracker that the leaves make the root)."""
    if len(payload) < _DOC_LEN.size:
        raise ReceiptInvalid("root.format", "shorter than the document length")
    (size,) = _DOC_LEN.unpack_from(payload)
    end = _DOC_LEN.size + size
    if size > MAX_DOC or len(payload) < end + SIGNATURE_LEN:
        raise ReceiptInvalid("root.format", "not a document and a 64-byte signature")
    root = root_from_doc(payload[_DOC_LEN.size : end], payload[end : end + SIGNATURE_LEN])
    raw = payload[end + SIGNATURE_LEN :]
    if len(raw) != root.count * merkle.HASH_LEN:
        raise ReceiptInvalid("root.format", f"not {root.count} leaf hashes after the signature")
    leaves = tuple(raw[at : at + merkle.HASH_LEN] for at in range(0, len(raw), merkle.HASH_LEN))
    return dataclasses.replace(root, leaves=leaves)


def root_from_doc(doc: bytes, signature: bytes) -> SignedRoot:
    if len(doc) > MAX_DOC or len(signature) != SIGNATURE_LEN:
        raise ReceiptInvalid("root.format", "document too long or signature not 64 bytes")
    try:
        fields = json.loads(doc)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise ReceiptInvalid("root.format", "document: not JSON") from None
    if not isinstance(fields, dict) or canonical(fields) != doc:
        raise ReceiptInvalid("root.format", "document: not a canonical JSON object")
    _check_root_fields(fields)
    return SignedRoot(
        session_id=fields["session_id"], first_index=fields["first_index"],
        count=fields["count"], root=bytes.fromhex(fields["root"]),
        signing_public=_signing_public(fields["signing_public"]),
        hpke_key_sha256=fields["hpke_key_sha256"], signed_at=fields["signed_at"],
        doc=doc, signature=signature,
    )  # fmt: skip


_ROOT_FIELDS: dict[str, Callable[[Any], bool]] = {
    "v": lambda v: type(v) is int and v == VERSION,
    "session_id": lambda v: isinstance(v, str) and _SESSION.fullmatch(v) is not None,
    "first_index": lambda v: type(v) is int and 0 <= v < 1 << 53,
    "count": lambda v: type(v) is int and 1 <= v <= MAX_BATCH,
    "root": lambda v: isinstance(v, str) and _SHA256.fullmatch(v) is not None,
    "signing_public": lambda v: isinstance(v, str) and len(v) <= 64,
    "hpke_key_sha256": lambda v: isinstance(v, str) and _SHA256.fullmatch(v) is not None,
    "signed_at": lambda v: isinstance(v, str) and _ISO_UTC.fullmatch(v) is not None,
}


def _check_root_fields(fields: Mapping[str, Any]) -> None:
    if set(fields) != set(_ROOT_FIELDS):
        raise ReceiptInvalid("root.format", "document: fields differ from a v2 root")
    for name, valid in _ROOT_FIELDS.items():
        if not valid(fields[name]):
            raise ReceiptInvalid("root.format", f"{name}: not valid")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _signing_public(text: str) -> bytes:
    raw = _unb64(text)
    if raw is None or len(raw) != 32:
        raise ReceiptInvalid("root.format", "signing_public: not an Ed25519 public key")
    return raw


# Proof bundles ---------------------------------------------------------------------------

_BUNDLE_FIELDS = {"v", "receipt", "root", "signature", "index", "size", "path"}


def proof_bundle(receipt: ReceiptV2, root: SignedRoot, path: list[bytes]) -> str:
    """What the gateway stores per receipt and anyone can check offline: the receipt's body,
    the signed root document and its signature, the leaf's position and its audit path."""
    return canonical({
        "v": VERSION, "receipt": receipt.text, "root": root.doc.decode(),
        "signature": b64(root.signature), "index": receipt.index - root.first_index,
        "size": root.count, "path": [node.hex() for node in path],
    }).decode()  # fmt: skip


def verify_bundle(
    bundle: str | bytes | Mapping[str, Any], attested_signing_sha256: str | None
) -> ReceiptV2:
    """The receipt a proof bundle proves; ReceiptInvalid naming the failed check:
    proof.format, receipt.format, root.format, root.key, root.signature, proof.batch,
    proof.path. With `attested_signing_sha256` None the root's own key is taken (the caller
    must then compare `receipt.signing_key_sha256` with what the attestation vouched for)."""
    return verify_bundle_root(bundle, attested_signing_sha256)[0]


def verify_bundle_root(
    bundle: str | bytes | Mapping[str, Any], attested_signing_sha256: str | None
) -> tuple[ReceiptV2, SignedRoot]:
    doc = _bundle_doc(bundle)
    receipt = parse_body(doc["receipt"].encode())
    root = root_from_doc(doc["root"].encode(), _signature(doc["signature"]))
    root.verify(attested_signing_sha256)
    if receipt.signing_key_sha256 != root.signing_key_sha256:
        raise ReceiptInvalid("root.key", "the receipt names another signing key than the root")
    _check_batch(receipt, root, doc["index"], doc["size"])
    path = [bytes.fromhex(node) for node in doc["path"]]
    if not merkle.verify_inclusion(receipt.leaf, doc["index"], doc["size"], path, root.root):
        raise ReceiptInvalid("proof.path", "the audit path does not lead to the signed root")
    return receipt, root


def _bundle_doc(bundle: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(bundle, str | bytes):
        if len(bundle) > MAX_BUNDLE:
            raise ReceiptInvalid("proof.format", f"over {MAX_BUNDLE} bytes")
        try:
            bundle = json.loads(bundle)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
            raise ReceiptInvalid("proof.format", "not JSON") from None
    if not isinstance(bundle, Mapping) or set(bundle) != _BUNDLE_FIELDS:
        raise ReceiptInvalid("proof.format", "not a v2 proof bundle")
    doc = dict(bundle)
    problem = _bundle_problem(doc)
    if problem:
        raise ReceiptInvalid("proof.format", problem)
    return doc


def _bundle_problem(doc: Mapping[str, Any]) -> str:
    if doc["v"] != VERSION or type(doc["v"]) is not int:
        return f"v: not {VERSION}"
    if not isinstance(doc["receipt"], str) or len(doc["receipt"]) > MAX_BODY:
        return "receipt: not a receipt body"
    if not isinstance(doc["root"], str) or not isinstance(doc["signature"], str):
        return "root, signature: not text"
    if any(type(doc[name]) is not int or doc[name] < 0 for name in ("index", "size")):
        return "index, size: not counts"
    path = doc["path"]
    if not isinstance(path, list) or len(path) > merkle.MAX_PATH:
        return f"path: not a list of at most {merkle.MAX_PATH} hashes"
    if not all(isinstance(node, str) and _SHA256.fullmatch(node) for node in path):
        return "path: not SHA-256 hashes in hex"
    return ""


def _signature(text: str) -> bytes:
    raw = _unb64(text)
    if raw is None:
        raise ReceiptInvalid("proof.format", "signature: not base64")
    return raw


def _check_batch(receipt: ReceiptV2, root: SignedRoot, index: int, size: int) -> None:
    """The receipt must be the one the root's batch holds at `index`: same session, same
    enclave key, its number inside the batch, and the signed batch size."""
    if receipt.session_id != root.session_id or receipt.hpke_key_sha256 != root.hpke_key_sha256:
        raise ReceiptInvalid("proof.batch", "the receipt is not from the root's session")
    if size != root.count or receipt.index != root.first_index + index:
        raise ReceiptInvalid("proof.batch", "the receipt is not at that place in the batch")


__all__ = [
    "MAX_BATCH",
    "SignedRoot",
    "parse_root",
    "proof_bundle",
    "sign_root",
    "verify_bundle",
    "verify_bundle_root",
]
