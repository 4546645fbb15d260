"""Attestation-gated secret release (docs/sealed-mode.md, section 4).

The operator seals a pool's secrets to the HPKE key in evidence it has just verified, so only
that enclave can read them; the agent opens them inside. The bundle is an ordinary sealed
request to `/v1/secrets`, so it shares the request's checks (key id, authenticated metadata).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric import x25519

from teeroute.sealing.envelope import SealedRequest, canonical, open_request, seal_request
from teeroute.sealing.errors import EnvelopeInvalid

PATH = "/v1/secrets"
ENGINE_API_KEY = "engine-api-key"
"""The secret the agent sends to its engine as `Authorization: Bearer` (relay miners)."""


def seal_secrets(hpke_public: bytes, pool: str, secrets: Mapping[str, str]) -> bytes:
    """The `/v1/secrets` request body carrying `secrets` to the enclave holding the key."""
    body = canonical({"secrets": dict(secrets)})
    sealed, _ = seal_request(hpke_public, {"path": PATH, "pool": pool}, body)
    return sealed.to_bytes()


def open_secrets(
    raw: bytes, hpke_private: x25519.X25519PrivateKey, hpke_public: bytes
) -> tuple[str, dict[str, str]]:
    """(pool, secrets) from a release body, inside the enclave."""
    sealed = SealedRequest.parse(raw)
    if sealed.meta.get("path") != PATH:
        raise EnvelopeInvalid("meta.path", f"expected {PATH}")
    body, _ = open_request(sealed, hpke_private, hpke_public)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EnvelopeInvalid("secrets", "not valid JSON") from None
    secrets = doc.get("secrets") if isinstance(doc, dict) else None
    if not isinstance(secrets, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
    ):
        raise EnvelopeInvalid("secrets", "expected an object of strings")
    return str(sealed.meta.get("pool", "")), secrets
