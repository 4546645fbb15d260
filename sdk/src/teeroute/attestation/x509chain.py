"""Certificate checks shared by the TEE types: issued-by, validity at `now`, CA usage."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import warnings
from collections import OrderedDict
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.utils import CryptographyDeprecationWarning

from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.verdict import Check

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
UNREADABLE = (
    ValueError,
    KeyError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
"""What cryptography raises for certificate bytes it cannot read (not all are ValueError)."""


def load_der(data: bytes, what: str) -> x509.Certificate:
    try:
        with warnings.catch_warnings():
            # AMD's VCEKs have serial number 0, which RFC 5280 forbids; they are real.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return _readable([x509.load_der_x509_certificate(data)])[0]
    except UNREADABLE as exc:
        raise EvidenceInvalid(f"{what}.parse", f"not a DER certificate: {exc}") from exc


def load_pem_chain(data: bytes, what: str) -> list[x509.Certificate]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return _readable(x509.load_pem_x509_certificates(data))
    except UNREADABLE as exc:
        raise EvidenceInvalid(f"{what}.parse", f"not PEM certificates: {exc}") from exc


def _readable(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """`certs`, once their names and extensions parsed: cryptography reads them on first
    use, so a malformed one (from evidence) would otherwise raise ValueError or KeyError
    inside a check, long after loading."""
    for cert in certs:
        _ = (cert.subject, cert.issuer, cert.extensions)
    return certs


class _Signatures:
    """Outcomes of certificate signature checks, by the SHA-256 of both certificates' DER.

    A signature over fixed bytes verifies the same way every time, so an endpoint's chain
    (the same chip or PCK certificate under the same CA at every challenge) is verified once
    per process, not once per challenge; a different byte in either certificate is a
    different key. Validity dates are not cached: `valid_at` checks them at every use.
    Bounded (least recently used out) since certificates come from the untrusted side."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[bytes, bytes], tuple[bool, str]] = OrderedDict()
        self._lock = threading.Lock()  # verification runs in worker threads

    def check(self, cert: x509.Certificate, issuer: x509.Certificate) -> tuple[bool, str]:
        key = (cert.fingerprint(hashes.SHA256()), issuer.fingerprint(hashes.SHA256()))
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return self._seen[key]
        outcome = _verify_signature(cert, issuer)
        with self._lock:
            self._seen[key] = outcome
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
        return outcome


def _verify_signature(cert: x509.Certificate, issuer: x509.Certificate) -> tuple[bool, str]:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError) as exc:
        return False, f"{_cn(cert)} is not signed by {_cn(issuer)}: {exc or type(exc).__name__}"
    return True, f"{_cn(cert)} signed by {_cn(issuer)}"


SIGNATURES = _Signatures()


def issued_by(name: str, cert: x509.Certificate, issuer: x509.Certificate) -> Check:
    ok, detail = SIGNATURES.check(cert, issuer)
    return Check(name, "passed" if ok else "failed", detail)


def valid_at(name: str, certs: list[x509.Certificate], now: dt.datetime) -> Check:
    expired = [
        f"{_cn(c)} valid {c.not_valid_before_utc:%Y-%m-%d}..{c.not_valid_after_utc:%Y-%m-%d}"
        for c in certs
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc
    ]
    return Check.of(name, not expired, "; ".join(expired) or f"all valid at {now:%Y-%m-%dT%H:%MZ}")


def is_ca(name: str, certs: list[x509.Certificate]) -> Check:
    """CA certificates must say so (basicConstraints CA, keyCertSign where key usage is set)."""
    bad = []
    for cert in certs:
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        try:
            signs = cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
        except x509.ExtensionNotFound:
            signs = True
        if not (ca and signs):
            bad.append(_cn(cert))
    return Check.of(name, not bad, f"not a CA: {', '.join(bad)}" if bad else "")


def public_key(cert: x509.Certificate) -> Any:
    """The certificate's public key, or None when it cannot be used (evidence comes from
    the untrusted side: a certificate may parse while its key does not)."""
    try:
        return cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def key_id(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's SubjectPublicKeyInfo, hex: an identity for the hardware
    key it certifies ("" when the key is unusable)."""
    key = public_key(cert)
    if key is None:
        return ""
    return hashlib.sha256(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).hexdigest()


def same_key(a: x509.Certificate, b: x509.Certificate) -> bool:
    key_a, key_b = public_key(a), public_key(b)
    return (
        key_a is not None
        and key_b is not None
        and key_a.public_bytes(*_SPKI) == key_b.public_bytes(*_SPKI)
    )


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()
