"""The enclave's key pairs, made at start and held only in memory.

HPKE (X25519) is what clients seal requests to; Ed25519 signs usage receipts. Their public
halves go into report_data (see teeroute.attestation.policy.bind), so evidence vouches for
exactly these keys. There is deliberately no way to export the private halves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class EnclaveKeys:
    _hpke: x25519.X25519PrivateKey = field(repr=False)
    _signing: ed25519.Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> EnclaveKeys:
        return cls(x25519.X25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate())

    @property
    def hpke_public(self) -> bytes:
        return self._hpke.public_key().public_bytes(*_RAW)

    @property
    def signing_public(self) -> bytes:
        return self._signing.public_key().public_bytes(*_RAW)

    def fingerprint(self) -> str:
        """Names the key set in logs and annotations (SHA-256 of both public keys)."""
        return hashlib.sha256(self.hpke_public + self.signing_public).hexdigest()[:32]

    def sign(self, message: bytes) -> bytes:
        return self._signing.sign(message)
