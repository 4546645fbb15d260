"""The enclave's key pairs, made at start and held only in memory.

HPKE (X25519) is what clients seal requests to; Ed25519 signs usage receipts. Their public
halves go into report_data (see teeroute.attestation.policy.bind), so evidence vouches for
exactly these keys, together with the operator's release key the agent was started pinning
(if any): the only signer whose secret releases `open_secrets` accepts, the pool the
agent was started serving (if any): the only pool whose releases it accepts, and the gateway
keys it was started pinning: the only signers whose requests it answers (gateway_auth), so a
verifier sees whom the enclave answers. There is deliberately
no way to export the private halves: the HPKE key is used only through `open_request` /
`open_secrets`, the signing key only through `sign`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from teeroute.sealing import envelope, secrets
from teeroute.sealing.errors import ReleaseInvalid

_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class EnclaveKeys:
    _hpke: x25519.X25519PrivateKey = field(repr=False)
    _signing: ed25519.Ed25519PrivateKey = field(repr=False)
    release_public: bytes = b""
    """The operator release key pinned at start (raw Ed25519 public key); empty: none."""
    pool: str = ""
    """The pool ("<namespace>/<name>") served, fixed at start; empty: none."""
    gateway_keys: tuple[bytes, ...] = ()
    """The gateway keys pinned at start (raw Ed25519 public keys, sorted, each once); the
    caller check (gateway_auth.Callers) must be given exactly these. Empty: none."""

    @classmethod
    def generate(
        cls, release_public: bytes = b"", pool: str = "", gateway_keys: tuple[bytes, ...] = ()
    ) -> EnclaveKeys:
        return cls(
            x25519.X25519PrivateKey.generate(),
            ed25519.Ed25519PrivateKey.generate(),
            release_public,
            pool,
            # a set: neither the order of the environment's list nor a repeat counts
            tuple(sorted(set(gateway_keys))),
        )

    @cached_property
    def hpke_public(self) -> bytes:
        return self._hpke.public_key().public_bytes(*_RAW)

    @cached_property
    def signing_public(self) -> bytes:
        return self._signing.public_key().public_bytes(*_RAW)

    @cached_property
    def hpke_key_id(self) -> str:
        """The name sealed requests use for this enclave's HPKE key (`key_id`)."""
        return envelope.key_id(self.hpke_public)

    def fingerprint(self) -> str:
        """Names the key set in logs and annotations (SHA-256 of both public keys)."""
        return hashlib.sha256(self.hpke_public + self.signing_public).hexdigest()[:32]

    def sign(self, message: bytes) -> bytes:
        return self._signing.sign(message)

    def open_request(self, sealed: envelope.SealedRequest) -> tuple[bytes, envelope.ResponseSealer]:
        """The plaintext of a request sealed to this enclave and the sealer for its answer;
        `OpenFailed` if it was sealed to another key or altered."""
        return envelope.open_request(sealed, self._hpke, self.hpke_public)

    def open_secrets(self, raw: bytes) -> secrets.Release:
        """A secret release sealed to this enclave, signed by the pinned release key for the
        pool served (section 4); `ReleaseInvalid` (check `release.key`, `pool.binding`) when
        no key is pinned or no pool served."""
        if not self.release_public:
            raise ReleaseInvalid("release.key", "this enclave pins no release key")
        if not self.pool:
            raise ReleaseInvalid("pool.binding", "this enclave serves no pool")
        return secrets.open_secrets(
            raw, self._hpke, self.hpke_public, self.release_public, pool=self.pool
        )
