"""The gateway's own attestation, when it runs in a TEE (`POST /v1/gateway/attestation`).

A client that routes through the gateway trusts it with what sealed mode does not hide (model,
sizes, metering; and, unsealed, the prompts), so it may ask which code the gateway runs and
whether its TLS connection ends inside that code. The gateway answers the client's nonce with
evidence in the enclave agent's document shape (`teeroute.attestation.evidence`), minus
`enclave_keys`, plus the hash it binds:

    {"tee", "nonce", "evidence", "certificates", "tls_spki_sha256": hex, "produced_at"}

whose report_data is `policy.bind_gateway(nonce, SHA-256 of the TLS certificate's
SubjectPublicKeyInfo)` (docs/sealed-mode.md, section 6). The client recomputes that hash from
the certificate of the connection it asked on (`teeroute attest --self`).

    identity_from_settings(settings)   None when `tee` is off; IdentityError names the field
    attested(identity)                 NotFound `gateway_not_attested` when there is none
    parse_nonce(body)                  BadRequest `invalid_nonce` naming `nonce`
    fresh_document(identity, nonce)    the document, made in a worker thread (configfs
                                       blocks); Unavailable `evidence_unavailable`

The simulated TEE measures this package's sources (`teeroute_gateway`), as the agent's
measures its own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teeroute.attestation import x509chain
from teeroute.attestation.errors import AttestationError
from teeroute.attestation.policy import bind_gateway
from teeroute.attestation.providers import (
    ConfigfsTsmProvider,
    Provider,
    ProviderError,
    SimulatedProvider,
    code_measurement,
)
from teeroute.errors import TeerouteError
from teeroute_gateway.errors import BadRequest, NotFound, Unavailable
from teeroute_gateway.requests import json_object
from teeroute_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)
PACKAGE = Path(__file__).resolve().parent
NONCE_SIZE = 32
MAX_BODY = 4096
"""Of an attestation request: a nonce in JSON needs far less."""


class IdentityError(TeerouteError):
    """The gateway cannot attest itself as configured (raised at start; names the field)."""

    exit_code = 2

    def __init__(self, setting: str, detail: str) -> None:
        super().__init__(f"{setting}: {detail}")
        self.setting = setting


@dataclass(frozen=True)
class GatewayIdentity:
    provider: Provider = field(repr=False)
    tls_spki_sha256: bytes

    @property
    def tee(self) -> str:
        return self.provider.tee

    def document(self, nonce: bytes, now: dt.datetime) -> dict[str, Any]:
        """Evidence for `nonce`, bound to the TLS key. Blocks (configfs-tsm); ProviderError
        when the TEE gives none."""
        evidence = self.provider.evidence(bind_gateway(nonce, self.tls_spki_sha256))
        return {
            "tee": self.provider.tee,
            "nonce": _b64(nonce),
            "evidence": _b64(evidence.raw),
            "certificates": evidence.certificates,
            "tls_spki_sha256": self.tls_spki_sha256.hex(),
            "produced_at": now.isoformat(timespec="seconds"),
        }


def identity_from_settings(settings: GatewaySettings) -> GatewayIdentity | None:
    """The identity the settings describe, its files read now (the TLS certificate as uvicorn
    serves it from start to exit): None when `tee` is off."""
    if settings.tee == "off":
        return None
    if settings.tls_cert_file is None:  # the settings refuse this; kept for the type checker
        raise IdentityError("tlsCertFile", f"tee {settings.tee} needs a TLS certificate")
    return GatewayIdentity(_provider(settings), tls_spki_sha256(settings.tls_cert_file))


def tls_spki_sha256(path: Path) -> bytes:
    """SHA-256 of the SubjectPublicKeyInfo of the first (leaf) certificate in a PEM file."""
    try:
        certs = x509chain.load_pem_chain(path.read_bytes(), "tlsCertFile")
    except OSError as exc:
        raise IdentityError("tlsCertFile", f"cannot read {path}: {exc.strerror}") from None
    except AttestationError as exc:
        raise IdentityError("tlsCertFile", f"{path}: {exc.detail}") from None
    key_id = x509chain.key_id(certs[0]) if certs else ""
    if not key_id:
        raise IdentityError("tlsCertFile", f"{path} holds no certificate with a usable key")
    return bytes.fromhex(key_id)


def _provider(settings: GatewaySettings) -> Provider:
    if settings.tee == "simulated":
        if settings.simulated_chip_dir is None:  # the settings refuse this
            raise IdentityError("simulatedChipDir", "tee simulated needs one")
        try:
            return SimulatedProvider(
                settings.simulated_chip_dir, settings.simulated_node, code_measurement(PACKAGE)
            )
        except ProviderError as exc:
            raise IdentityError("simulatedChipDir", str(exc)) from None
    try:
        return ConfigfsTsmProvider()
    except (ProviderError, OSError) as exc:
        raise IdentityError("tee", f"tsm: {exc}") from None


def attested(identity: GatewayIdentity | None) -> GatewayIdentity:
    if identity is None:
        raise NotFound(
            "this gateway does not attest itself (its setting tee is off)",
            code="gateway_not_attested",
        )
    return identity


async def fresh_document(identity: GatewayIdentity, nonce: bytes) -> dict[str, Any]:
    try:
        return await asyncio.to_thread(identity.document, nonce, dt.datetime.now(dt.UTC))
    except ProviderError as exc:
        log.warning("the gateway's own evidence is unavailable: %s", exc)
        raise Unavailable(
            "the gateway's TEE gave no evidence; retry", code="evidence_unavailable"
        ) from None


def parse_nonce(raw: bytes) -> bytes:
    """The 32-byte nonce of `{"nonce": base64}`; BadRequest naming `nonce` otherwise."""
    nonce = json_object(raw).get("nonce")
    try:
        decoded = base64.b64decode(nonce if isinstance(nonce, str) else "", validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != NONCE_SIZE:
        raise BadRequest(
            f"nonce must be base64 of {NONCE_SIZE} random bytes",
            code="invalid_nonce",
            param="nonce",
        )
    return decoded


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
