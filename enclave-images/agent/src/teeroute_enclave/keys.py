"""The enclave's key pairs, made at start and held only in memory.

HPKE (X25519) is what clients seal requests to; Ed25519 signs usage receipts. Their public
halves go into report_data (see teeroute.attestation.policy.bind), so evidence vouches for
exactly these keys, together with the operator's release key the agent was started pinning
(if any): the only signer whose secret releases `open_secrets` accepts, the pool the
agent was started serving (if any): the only pool whose releases it accepts, and the gateway
keys it was started pinning: the only signers whose requests it answers (gateway_auth), so a
verifier sees whom the enclave answers. There is deliberately
no way to export the private halves: the HPKE key is used only through `accept` /
`open_oneshot` (wire v2 sessions) and `open_secrets`, the signing key only through `sign`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from teeroute.sealing import envelope, secrets, session
from teeroute.sealing.errors import FrameInvalid, ReleaseInvalid

_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Oneshot:
    """An opened ONESHOT: its HELLO, the request's meta and body, the Reply that seals
    the answer, and the throwaway session's receipt key (tag kind 2)."""

    hello: session.Hello
    meta: bytes
    body: bytes
    reply: session.Reply
    receipt_key: bytes = field(repr=False)


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

    @cached_property
    def signing_key_id(self) -> str:
        """SHA-256 of the signing key (what a session's `enclave_signing_sha256` names)."""
        return envelope.key_id(self.signing_public)

    def fingerprint(self) -> str:
        """Names the key set in logs and annotations (SHA-256 of both public keys)."""
        return hashlib.sha256(self.hpke_public + self.signing_public).hexdigest()[:32]

    def sign(self, message: bytes) -> bytes:
        return self._signing.sign(message)

    def accept(self, hello: session.Hello, now: float) -> tuple[bytes, session.Session]:
        """A wire v2 session from a HELLO to these keys: (WELCOME frame, Session); the
        `session.*` checks of `teeroute.sealing.session.accept`."""
        return session.accept(hello, self._hpke, self.hpke_public, self.signing_key_id, now)

    def open_oneshot(self, payload: bytes, now: float) -> Oneshot:
        """A ONESHOT payload (u16 hello length | HELLO | REQUEST) opened under its own,
        throwaway session (closed at once: it takes no second request)."""
        if len(payload) < 2 or len(payload) < 2 + int.from_bytes(payload[:2], "big"):
            raise FrameInvalid("frame.truncated", "a oneshot cut inside its hello")
        end = 2 + int.from_bytes(payload[:2], "big")
        hello = session.parse_hello(payload[2:end])
        throwaway = self.accept(hello, now)[1]
        try:
            meta, body, reply = throwaway.open_request(payload[end:], now)
        finally:
            throwaway.close()
        return Oneshot(hello, meta, body, reply, throwaway.receipt_key)

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
