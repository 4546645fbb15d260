"""ECDSA checks shared by the TEE types: each report carries r and s its own way (SNP
little-endian 72-byte fields, the others big-endian halves); the check itself is one."""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from teeroute.attestation.verdict import Check

_CURVES: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "secp256r1": ("P-256", hashes.SHA256),
    "secp384r1": ("P-384", hashes.SHA384),
}


def halves(signature: bytes) -> tuple[int, int]:
    """r and s from a big-endian r‖s signature."""
    middle = len(signature) // 2
    return int.from_bytes(signature[:middle], "big"), int.from_bytes(signature[middle:], "big")


def ecdsa_check(
    name: str, key: Any, message: bytes, r: int, s: int, curve: str, signer: str
) -> Check:
    """Passed when `key` (from evidence, so possibly None or of another kind) is an EC key on
    `curve` and (r, s) signs `message` with the curve's hash."""
    label, digest = _CURVES[curve]
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
        return Check(name, "failed", f"no usable {label} key")
    try:
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(digest()))
    except InvalidSignature:
        return Check(name, "failed", f"ECDSA {label} signature does not verify")
    return Check(name, "passed", signer)
