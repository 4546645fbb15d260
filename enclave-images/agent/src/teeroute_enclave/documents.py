"""The evidence document for one challenge (the contract in teeroute.attestation.evidence)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from teeroute.attestation.policy import bind
from teeroute.attestation.providers import Provider
from teeroute_enclave.keys import EnclaveKeys

NONCE_SIZE = 32


def evidence_document(
    provider: Provider, keys: EnclaveKeys, nonce: bytes, now: dt.datetime
) -> dict[str, Any]:
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"the nonce must be {NONCE_SIZE} bytes, not {len(nonce)}")
    report_data = bind(
        nonce,
        keys.hpke_public,
        keys.signing_public,
        keys.release_public,
        keys.pool,
        keys.gateway_keys,
    )
    evidence = provider.evidence(report_data)
    enclave_keys: dict[str, Any] = {
        "hpke": _b64(keys.hpke_public),
        "signing": _b64(keys.signing_public),
    }
    if keys.release_public:
        enclave_keys["release"] = _b64(keys.release_public)
    if keys.gateway_keys:  # bound above, sorted: a verifier recomputes report_data with them
        enclave_keys["gateway"] = [_b64(key) for key in keys.gateway_keys]
    document: dict[str, Any] = {
        "tee": provider.tee,
        "nonce": _b64(nonce),
        "evidence": _b64(evidence.raw),
        "certificates": evidence.certificates,
        "enclave_keys": enclave_keys,
        "produced_at": now.isoformat(timespec="seconds"),
    }
    if keys.pool:  # bound above: a verifier recomputes report_data with it
        document["pool"] = keys.pool
    return document


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
