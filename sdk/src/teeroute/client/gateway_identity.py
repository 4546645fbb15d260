"""Is the gateway the code we expect, and does our TLS connection end inside it?
(`teeroute attest --gateway URL --self`; docs/sealed-mode.md, section 6)

We send the gateway a fresh nonce of our own (`POST /v1/gateway/attestation`) and read, from
the same connection, the TLS certificate it presented. Its answer passes only if:

    document       it is a gateway evidence document (not an enclave's)
    nonce          it answers our nonce (fresh, not replayed)
    <verifier>     the evidence verifies against the user's policy and roots, exactly as an
                   enclave's does (signature, chain, policy.tee_allowed, policy.measurement, ...)
    tls_binding    its report_data is bind_gateway(our nonce, SHA-256 of the SubjectPublicKeyInfo
                   of the certificate we were served): the key ending our TLS connection is the
                   one the TEE vouched for. Over http:// there is no such key: refused.

The certificate's CA chain is not what this checks (a gateway in a TEE may well use a
self-signed one): the attestation is the authentication, as in RA-TLS.

    judge_gateway(raw, nonce=, peer_certificate=, now=, policy=)   pure: -> GatewayVerdict
    attest_gateway(url, policy)                                    one round over the network
    pinned_tls(verdict)                                            TLS to that gateway only

`pinned_tls` is what `teeroute proxy --require-attested-gateway` sends every request with: the
certificate the gateway attested is the only one a handshake accepts, so each connection
after the attestation ends in the same TLS key, not just the one the nonce went over.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import secrets
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from cryptography import x509
from pydantic import BaseModel, ConfigDict, ValidationError

from teeroute.attestation import x509chain
from teeroute.attestation.errors import AttestationError
from teeroute.attestation.evidence import verify_evidence
from teeroute.attestation.policy import bind_gateway
from teeroute.attestation.verdict import Check
from teeroute.client.errors import GatewayError, GatewayUnreachable
from teeroute.client.policy import ClientPolicy, allows
from teeroute.wire import WireError, read_capped

PATH = "/v1/gateway/attestation"
NONCE_SIZE = 32
SPKI_HASH_SIZE = 32
TIMEOUT_S = 30.0
MAX_DOCUMENT = 1 << 20
"""Bytes of the gateway's evidence document read (a quote and its chain are a few kB)."""
IDENTITY = {"Accept-Encoding": "identity"}  # a compressed body's size says nothing of its own
UNCHECKED_HERE = frozenset({"binding.report_data", "freshness.age"})
"""The verifier's enclave-binding checks: a gateway document is bound by `tls_binding`, and its
freshness is our own nonce."""


class GatewayDocument(BaseModel):
    """The gateway's evidence document: the enclave agent's shape without enclave keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tee: Literal["sev-snp", "tdx", "simulated"]
    nonce: str
    evidence: str
    certificates: list[str]
    tls_spki_sha256: str
    produced_at: dt.datetime


@dataclass(frozen=True)
class GatewayVerdict:
    url: str
    checks: tuple[Check, ...]
    tee: str = ""
    measurement: str = ""
    chip_id: str = ""
    tls_spki_sha256: str = ""
    """Of the certificate we were served ("" over http)."""
    certificate: bytes = field(default=b"", repr=False)
    """That certificate (DER; b"" over http), for `pinned_tls`."""

    @property
    def ok(self) -> bool:
        """Nothing failed, and the TLS binding was checked: never a pass for an unbound key."""
        bound = any(c.name == "tls_binding" and c.status == "passed" for c in self.checks)
        return bound and all(c.status != "failed" for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {
            "gateway": self.url,
            "ok": self.ok,
            "tee": self.tee,
            "measurement": self.measurement,
            "chip_id": self.chip_id,
            "tls_spki_sha256": self.tls_spki_sha256,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
        }


def spki_sha256(der_certificate: bytes) -> bytes:
    """SHA-256 of a DER certificate's SubjectPublicKeyInfo (empty if it has no usable key)."""
    try:
        cert = x509.load_der_x509_certificate(der_certificate)
    except ValueError:
        return b""
    return bytes.fromhex(x509chain.key_id(cert))


def judge_gateway(
    raw: Any,
    *,
    url: str,
    nonce: bytes,
    peer_certificate: bytes | None,
    now: dt.datetime,
    policy: ClientPolicy,
) -> GatewayVerdict:
    """The gateway's answer, verified as if the gateway were hostile; `peer_certificate` is
    the DER certificate of the TLS connection the answer came on (None: no TLS)."""
    peer = peer_certificate or b""
    spki = spki_sha256(peer) if peer else b""
    try:
        doc = GatewayDocument.model_validate(raw)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "document"
        failed = Check("document", "failed", f"not a gateway evidence document ({where})")
        return GatewayVerdict(url, (failed,), tls_spki_sha256=spki.hex(), certificate=peer)
    own = (
        Check("document", "passed", f"a gateway evidence document ({doc.tee})"),
        Check.of("nonce", _decoded(doc.nonce) == nonce, "answers our own nonce"),
    )
    verified = _verify(doc, now, policy)
    if isinstance(verified, Check):
        return GatewayVerdict(
            url, (*own, verified), doc.tee, tls_spki_sha256=spki.hex(), certificate=peer
        )
    checks, claims = verified
    binding = _tls_binding(str(claims.get("report_data", "")), nonce, spki, url)
    return GatewayVerdict(
        url,
        (*own, *checks, binding),
        doc.tee,
        measurement=str(claims.get("measurement") or claims.get("mrtd") or ""),
        chip_id=str(claims.get("chip_id") or ""),
        tls_spki_sha256=spki.hex(),
        certificate=peer,
    )


def _verify(
    doc: GatewayDocument, now: dt.datetime, policy: ClientPolicy
) -> Check | tuple[tuple[Check, ...], dict[str, Any]]:
    """The verifier's checks and claims, or the one check that stopped it."""
    if not allows(policy, doc.tee):
        allowed = ", ".join(sorted(policy.policy.allowed_tee))
        return Check("policy.tee_allowed", "failed", f"{doc.tee} (allowed: {allowed})")
    raw = _decoded(doc.evidence)
    if raw is None:
        return Check("evidence.document", "failed", "evidence is not base64")
    try:
        verdict = verify_evidence(
            doc.tee,
            raw,
            doc.certificates,
            now=now,
            policy=policy.policy,
            trust=policy.trust,
            challenge=None,
        )
    except AttestationError as exc:
        return Check(exc.check, "failed", exc.detail)
    except (ValueError, TypeError, IndexError) as exc:  # hostile bytes no parser named
        return Check("evidence.document", "failed", type(exc).__name__)
    kept = tuple(c for c in verdict.checks if c.name not in UNCHECKED_HERE)
    return kept, verdict.claims


def _tls_binding(report_data_hex: str, nonce: bytes, spki: bytes, url: str) -> Check:
    if not url.startswith("https://"):
        return Check("tls_binding", "failed", "no TLS connection to bind (use an https:// URL)")
    if len(spki) != SPKI_HASH_SIZE:
        return Check("tls_binding", "failed", "the server's certificate has no usable key")
    expected = bind_gateway(nonce, spki)
    ok = secrets.compare_digest(report_data_hex.lower(), expected.hex())
    detail = f"report_data binds our nonce and the TLS key we were served ({spki.hex()[:16]}...)"
    if not ok:
        detail = f"report_data does not bind our nonce and the TLS key {spki.hex()[:16]}..."
    return Check.of("tls_binding", ok, detail)


def _decoded(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


# --- asking the gateway -----------------------------------------------------------------


def attest_gateway(
    url: str, policy: ClientPolicy, *, http: httpx.Client | None = None
) -> GatewayVerdict:
    """One round: a fresh nonce to the gateway, its answer judged with the certificate of the
    connection it came on. GatewayError when it answers with an error (404
    `gateway_not_attested`: it runs without a TEE), GatewayUnreachable without an answer."""
    base = url.rstrip("/").removesuffix("/v1")
    nonce = secrets.token_bytes(NONCE_SIZE)
    owned = http is None
    client = http or httpx.Client(verify=_unverified_tls(), timeout=TIMEOUT_S)
    try:
        raw, peer = _ask(client, base, nonce)
    finally:
        if owned:
            client.close()
    now = dt.datetime.now(dt.UTC)
    return judge_gateway(raw, url=base, nonce=nonce, peer_certificate=peer, now=now, policy=policy)


def _ask(client: httpx.Client, base: str, nonce: bytes) -> tuple[Any, bytes | None]:
    body = {"nonce": base64.b64encode(nonce).decode("ascii")}
    try:
        with client.stream("POST", base + PATH, json=body, headers=IDENTITY) as answer:
            peer = _peer_certificate(answer)
            content = _bounded(answer)
    except httpx.TransportError as exc:
        raise GatewayUnreachable(f"gateway {base}: {type(exc).__name__}: {exc}") from exc
    if answer.status_code != 200:
        raise GatewayError(answer.status_code, content)
    try:
        return json.loads(content), peer
    except ValueError:
        return None, peer  # judged as a malformed document


def _bounded(answer: httpx.Response) -> bytes:
    """The body up to MAX_DOCUMENT bytes; a longer or compressed one reads as nothing (then
    judged a malformed document), and the rest of it is never read."""
    try:
        return read_capped(answer, MAX_DOCUMENT, "the gateway's evidence document")
    except WireError:
        return b""


def _peer_certificate(answer: httpx.Response) -> bytes | None:
    """The DER certificate of the TLS connection `answer` is read from (None: plain HTTP)."""
    stream = answer.extensions.get("network_stream")
    tls = stream.get_extra_info("ssl_object") if stream is not None else None
    if tls is None:
        return None
    der = tls.getpeercert(True)  # positional: httpcore may hand over the _ssl object
    return der if isinstance(der, bytes) else None


def pinned_tls(verdict: GatewayVerdict) -> ssl.SSLContext:
    """TLS that completes only with the certificate `verdict` passed: it is the one trust
    anchor (a partial chain: it need not be a CA), and no host name is checked, since the
    attestation named a key, not a name. Its validity dates still count. ValueError for a
    verdict that did not pass (nothing to pin)."""
    if not verdict.ok or not verdict.certificate:
        raise ValueError("only a gateway that passed attestation over TLS can be pinned")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=verdict.certificate)
    return context


def _unverified_tls() -> ssl.SSLContext:
    """TLS without the CA check: the certificate is judged by the attestation (tls_binding)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
