"""Attestation-gated secret release (docs/sealed-mode.md, section 4).

The operator seals a pool's secrets to the HPKE key in evidence it has just verified, so only
that enclave can read them; the agent opens them inside. The bundle is an ordinary sealed
request to `/v1/secrets`, so it shares the request's checks (key id, authenticated metadata).

Anyone can seal to an enclave's public key, so sealing alone would let whoever reaches the
agent's port replace its secrets (say, a relay's upstream API key with one whose account the
sender can read). The plaintext is therefore signed by the operator's *release key*
(Ed25519): the agent is started pinning its public half (TEEROUTE_AGENT_RELEASE_KEY), binds it
into its evidence, and opens only releases that key signed, for this enclave key, newer than
the last one it applied.

The signature also covers the pool ("<namespace>/<name>") the secrets belong to, and the agent
opens only releases for the pool it serves (TEEROUTE_AGENT_POOL, bound into its evidence too).
The operator is a deputy for every pool: were the pool not signed and checked, a pool whose
endpoint relays to another pool's enclave would make it verify that enclave's evidence and
release the relaying pool's secrets into it (the confused deputy of issue 14).

    seal_secrets(hpke_public, pool, secrets, signer, issued_ns)         the operator
    open_secrets(raw, hpke_private, hpke_public, release_public, pool=)  the enclave -> Release
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from teeroute.sealing.envelope import (
    VERSION,
    SealedRequest,
    b64,
    canonical,
    key_id,
    open_request,
    seal_request,
    unb64,
)
from teeroute.sealing.errors import EnvelopeInvalid, ReleaseInvalid

PATH = "/v1/secrets"
ENGINE_API_KEY = "engine-api-key"
"""The secret the agent sends to its engine as `Authorization: Bearer` (relay miners)."""
SIGNATURE_CONTEXT = b"teeroute/v1 release\x00"
POOL_SHOWN = 320  # characters of a pool name an error repeats (a real one is at most 317)
_FIELDS = {"v", "pool", "key_id", "release_key", "issued_ns", "secrets", "signature"}


@dataclass(frozen=True)
class Signer:
    """The operator's release key: its raw public half and how to sign with the private."""

    public: bytes
    sign: Callable[[bytes], bytes] = field(repr=False)

    @classmethod
    def from_private(cls, private: ed25519.Ed25519PrivateKey) -> Signer:
        return cls(private.public_key().public_bytes_raw(), private.sign)


@dataclass(frozen=True)
class Release:
    pool: str
    secrets: dict[str, str] = field(repr=False)
    issued_ns: int
    """When the operator sealed it (ns since the epoch): an agent applies only newer ones."""


def seal_secrets(
    hpke_public: bytes,
    pool: str,
    secrets: Mapping[str, str],
    signer: Signer,
    issued_ns: int,
) -> bytes:
    """The `/v1/secrets` request body carrying `secrets` to the enclave holding the key."""
    doc: dict[str, Any] = {
        "v": VERSION,
        "pool": pool,
        "key_id": key_id(hpke_public),
        "release_key": b64(signer.public),
        "issued_ns": issued_ns,
        "secrets": dict(secrets),
    }
    doc["signature"] = b64(signer.sign(_signed(doc)))
    sealed, _ = seal_request(hpke_public, {"path": PATH, "pool": pool}, canonical(doc))
    return sealed.to_bytes()


def open_secrets(
    raw: bytes,
    hpke_private: x25519.X25519PrivateKey,
    hpke_public: bytes,
    release_public: bytes,
    *,
    pool: str,
) -> Release:
    """The release in `raw`, opened inside the enclave, if `release_public` signed it for this
    enclave key and for `pool`, the pool the enclave serves. EnvelopeInvalid / OpenFailed: it
    cannot be read; ReleaseInvalid: it can, but was not signed by the pinned key for this
    enclave and pool (the check names which: `pool.binding` for another pool)."""
    sealed = SealedRequest.parse(raw)
    if sealed.meta.get("path") != PATH:
        raise EnvelopeInvalid("meta.path", f"expected {PATH}")
    body, _ = open_request(sealed, hpke_private, hpke_public)
    doc = _document(body)
    if unb64(doc["release_key"], "release.release_key") != release_public:
        raise ReleaseInvalid("release.key", "not signed by the release key this enclave pins")
    try:
        public = ed25519.Ed25519PublicKey.from_public_bytes(release_public)
        public.verify(unb64(doc["signature"], "release.signature"), _signed(doc))
    except (InvalidSignature, ValueError):
        raise ReleaseInvalid("release.signature", "signature does not verify") from None
    if doc["key_id"] != key_id(hpke_public):
        raise ReleaseInvalid("release.key_id", "signed for another enclave key")
    if doc["pool"] != sealed.meta.get("pool"):
        raise ReleaseInvalid("release.pool", "meta.pool is not the signed pool")
    if not pool or doc["pool"] != pool:
        wanted = repr(pool[:POOL_SHOWN]) if pool else "no pool"
        raise ReleaseInvalid(
            "pool.binding",
            f"released for {doc['pool'][:POOL_SHOWN]!r}; this enclave serves {wanted}",
        )
    return Release(doc["pool"], doc["secrets"], doc["issued_ns"])


def _signed(doc: Mapping[str, Any]) -> bytes:
    return SIGNATURE_CONTEXT + canonical({k: v for k, v in doc.items() if k != "signature"})


def _document(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise EnvelopeInvalid("secrets", "not valid JSON") from None
    if not isinstance(doc, dict) or set(doc) != _FIELDS or doc.get("v") != VERSION:
        raise EnvelopeInvalid("secrets", "not a v1 release")
    secrets = doc["secrets"]
    if not isinstance(secrets, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
    ):
        raise EnvelopeInvalid("secrets", "expected an object of strings")
    texts = ("pool", "key_id", "release_key", "signature")
    if not all(isinstance(doc[name], str) for name in texts):
        raise EnvelopeInvalid("secrets", "pool, key_id, release_key, signature: expected text")
    if type(doc["issued_ns"]) is not int or doc["issued_ns"] < 0:
        raise EnvelopeInvalid("secrets", "issued_ns: expected a count of nanoseconds")
    return doc
