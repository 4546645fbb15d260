"""One challenge: send a fresh nonce to an endpoint's agent, verify what comes back.

The answer is an `Outcome` for the lease (lease.py): Verified, Rejected (evidence came but
failed, naming the checks) or Unreachable (no evidence). Verification runs in a worker thread,
off the event loop and far from any request path.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from teeroute.attestation.errors import AttestationError
from teeroute.attestation.evidence import EvidenceDocument, Trust, verify_document
from teeroute.attestation.policy import Policy
from teeroute.attestation.verdict import Verdict
from teeroute.wire import WireError, aread_capped
from teeroute_operator.lease import Outcome, Rejected, Unreachable, Verified
from teeroute_operator.metrics import Metrics
from teeroute_operator.nonces import NonceBook, NonceRejected

EVIDENCE_PATH = "/v1/attestation"
EGRESS_CHECK = "egress.url"
MAX_DOCUMENT_BYTES = 256 * 1024
KEY_BYTES = 32  # X25519 and Ed25519 public keys
IDENTITY = {"Accept-Encoding": "identity"}  # a compressed body's size says nothing of its own


@dataclass(frozen=True)
class Target:
    key: str
    """Stable identity of the endpoint the nonce is issued to (pod uid or pool/endpoint)."""
    url: str
    """The agent's base URL, e.g. http://10.244.0.5:8443."""
    refused: str | None = None
    """Why the operator may not call `url` (egress.check_endpoint_url): then nothing is sent
    and the endpoint is Rejected (check `egress.url`)."""


@dataclass(frozen=True)
class Judge:
    policy: Policy
    trust: Trust
    require_gpu: bool
    pool: str | None = None
    """The pool ("<namespace>/<name>") whose endpoint is challenged: evidence binding any
    other pool, or none, is Rejected (`pool.binding`), so a pool relaying to another pool's
    enclave is never admitted with its keys nor releases its secrets into it. None: not
    checked (evidence judged outside any pool); a sweep must always name its pool."""
    gateway_keys: frozenset[bytes] | None = None
    """The gateway keys (raw Ed25519) the operator is configured with: the enclave must pin
    exactly these (`gateway.keys`), or it could answer someone past the gateway (whoever
    patched its pod's environment). An empty set: it must pin none (so it answers no
    inference). None: not checked; a sweep always passes the operator's set."""


async def challenge(
    client: httpx.AsyncClient,
    target: Target,
    judge: Judge,
    book: NonceBook,
    metrics: Metrics,
    clock: Callable[[], dt.datetime],
) -> Outcome:
    if target.refused is not None:
        return Rejected(f"{EGRESS_CHECK}: {target.refused}")
    nonce = book.issue(target.key, clock())
    try:
        status, body = await fetch_document(client, target.url + EVIDENCE_PATH, nonce)
    except httpx.HTTPError as exc:
        return Unreachable(_transport_reason(exc))
    except WireError as exc:
        return Rejected(str(exc))
    if status >= 500 or status == 429:
        return Unreachable(f"agent answered HTTP {status}")
    if status != 200:
        return Rejected(f"agent answered HTTP {status} to a valid challenge")
    try:
        doc = EvidenceDocument.parse(json.loads(body))
        issued_at = book.redeem(_nonce_of(doc), target.key, clock())
    except (ValueError, RecursionError, AttestationError) as exc:  # RecursionError: deep nesting
        return Rejected(_describe(exc))
    except NonceRejected as exc:
        return Rejected(f"nonce: {exc}")
    return await asyncio.to_thread(_judge, doc, judge, issued_at, metrics, clock)


async def fetch_document(client: httpx.AsyncClient, url: str, nonce: bytes) -> tuple[int, bytes]:
    """POST the nonce; the agent's status and, on 200, its document: streamed, never
    decompressed, given up (WireError) past MAX_DOCUMENT_BYTES, so a miner that answers
    without end costs the operator at most that plus one network chunk."""
    payload = {"nonce": base64.b64encode(nonce).decode()}
    async with client.stream("POST", url, json=payload, headers=IDENTITY) as response:
        if response.status_code != 200:  # its body is never read
            return response.status_code, b""
        body = await aread_capped(response, MAX_DOCUMENT_BYTES, "evidence document")
        return response.status_code, body


def _judge(
    doc: EvidenceDocument,
    judge: Judge,
    issued_at: dt.datetime,
    metrics: Metrics,
    clock: Callable[[], dt.datetime],
) -> Outcome:
    started = time.perf_counter()
    try:
        verdict = verify_document(
            doc,
            now=clock(),
            policy=judge.policy,
            trust=judge.trust,
            issued_at=issued_at,
            require_gpu=judge.require_gpu,
            expected_pool=judge.pool,
            expected_gateway_keys=judge.gateway_keys,
        )
    except AttestationError as exc:
        return Rejected(_describe(exc))
    finally:
        metrics.verify_seconds.labels(doc.tee).observe(time.perf_counter() - started)
    if not verdict.ok:
        for check in verdict.failed:
            metrics.failed_checks.labels(doc.tee, check.name).inc()
        return Rejected(failed_checks(verdict))
    # The verifier bound these bytes into report_data (it read them as base64 already).
    keys = {"hpke": doc.enclave_keys.hpke, "signing": doc.enclave_keys.signing}
    if doc.enclave_keys.release is not None:  # the release key the enclave pins, if any
        keys["release"] = doc.enclave_keys.release
    raw_keys = {field: base64.b64decode(value) for field, value in keys.items()}
    for field, raw in raw_keys.items():
        if len(raw) != KEY_BYTES:
            return Rejected(f"enclave_keys.{field} is {len(raw)} bytes, not {KEY_BYTES}")
    hpke, signing = raw_keys["hpke"], raw_keys["signing"]
    return Verified(
        issued_at=issued_at,
        tee=doc.tee,
        measurement=str(verdict.claims.get("measurement") or verdict.claims.get("mrtd") or ""),
        chip_id=str(verdict.claims.get("chip_id", "")),
        hpke_key=hashlib.sha256(hpke).hexdigest(),
        signing_key=hashlib.sha256(signing).hexdigest(),
        hpke_public_key=base64.b64encode(hpke).decode(),
        signing_public_key=base64.b64encode(signing).decode(),
        pinned_release_key=raw_keys.get("release", b""),
    )


def failed_checks(verdict: Verdict) -> str:
    return "; ".join(
        f"{c.name} failed ({c.detail})" if c.detail else c.name for c in verdict.failed
    )


def _nonce_of(doc: EvidenceDocument) -> bytes:
    return base64.b64decode(doc.nonce, validate=True)


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def _transport_reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection failed"
    return type(exc).__name__
