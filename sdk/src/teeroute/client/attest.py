"""Fresh attestation, judged by the client itself (docs/sealed-mode.md, section 5).

We send the gateway a nonce of our own; it challenges each admitted endpoint of the model with
it and hands back the evidence documents. The gateway is trusted for nothing: every document
is verified here against the user's policy and roots, must answer *our* nonce (so it is fresh
and not replayed), and must vouch for exactly the key fingerprints the gateway routes by and,
when it binds a pool, for the pool the gateway lists it under (`entry.pool`); a policy with
`allowedPools` accepts only evidence binding one of them (`policy.pool`).

    judge(entry, nonce=, issued_at=, now=, policy=)   one entry -> VerifiedEnclave | RefusedEnclave
    Attestor.attest(model)                            the model's enclaves, cached for
                                                      min(maxEvidenceAge, 5 min)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from teeroute.attestation.errors import AttestationError, EvidenceInvalid
from teeroute.attestation.evidence import EvidenceDocument, verify_document
from teeroute.attestation.verdict import Check
from teeroute.client.errors import GatewayError, GatewayUnreachable
from teeroute.client.policy import ClientPolicy, allows
from teeroute.wire import WireError, read_capped

NONCE_SIZE = 32
UNAVAILABLE = "attestation.unavailable"
"""The check an endpoint fails when it gave the gateway no evidence for our nonce."""
ATTESTATIONS_PATH = "/v1/attestations"
KEY_LENGTH = 32  # raw X25519 and Ed25519 public keys
MAX_LISTING = 64 << 20
"""Bytes of the gateway's attestation listing read: every endpoint's evidence (at most 256 kB
each, as the operator reads them) for one model."""

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class VerifiedEnclave:
    """An enclave whose fresh evidence passed the client's policy: what we seal to."""

    pool: str
    endpoint_id: str
    tee: str
    measurement: str
    chip_id: str
    hpke_public: bytes = field(repr=False)
    signing_public: bytes = field(repr=False)
    hpke_key_sha256: str
    signing_key_sha256: str
    verified_at: dt.datetime
    pricing: Mapping[str, Any] | None = field(default=None, compare=False)
    checks: tuple[Check, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class RefusedEnclave:
    """An enclave we will not seal to, and the checks it failed."""

    pool: str
    endpoint_id: str
    tee: str
    failed: tuple[str, ...]
    checks: tuple[Check, ...] = field(default=(), repr=False)

    @property
    def reason(self) -> str:
        return ", ".join(self.failed)


@dataclass(frozen=True)
class Attestation:
    """The outcome of one round of challenges for a model."""

    model: str
    verified: tuple[VerifiedEnclave, ...]
    refused: tuple[RefusedEnclave, ...]
    at: dt.datetime


# --- judging one entry ----------------------------------------------------------------


def judge(
    entry: Any,
    *,
    nonce: bytes,
    issued_at: dt.datetime,
    now: dt.datetime,
    policy: ClientPolicy,
) -> VerifiedEnclave | RefusedEnclave:
    """One entry of the gateway's answer, verified as if the gateway were hostile."""
    if not isinstance(entry, Mapping):
        return RefusedEnclave("", "?", "", ("entry.format",))
    pool = _text(entry.get("pool"))
    endpoint_id = _text(entry.get("endpoint_id") or entry.get("endpoint")) or "?"
    tee = _text(entry.get("tee"))

    def refused(*checks: Check) -> RefusedEnclave:
        failed = tuple(c.name for c in checks if c.status == "failed")
        return RefusedEnclave(pool, endpoint_id, tee, failed, tuple(checks))

    try:
        doc = EvidenceDocument.parse(entry.get("evidence"))
        hpke_public = _key(doc.enclave_keys.hpke, "enclave_keys.hpke")
        signing_public = _key(doc.enclave_keys.signing, "enclave_keys.signing")
    except AttestationError as exc:
        return refused(Check(exc.check, "failed", exc.detail))
    tee = tee or doc.tee
    hpke_sha = hashlib.sha256(hpke_public).hexdigest()
    signing_sha = hashlib.sha256(signing_public).hexdigest()
    own = (
        Check.of("freshness.nonce", _nonce_is(doc.nonce, nonce), "answers our own nonce"),
        Check.of("entry.tee", tee == doc.tee, f"listed {tee}, evidence {doc.tee}"),
        Check.of(
            "keys.hpke",
            entry.get("hpke_key_sha256") == hpke_sha,
            "the routed HPKE key is the attested one",
        ),
        Check.of(
            "keys.signing",
            entry.get("signing_key_sha256") == signing_sha,
            "the receipt key is the attested one",
        ),
        _listed_pool(entry, doc.pool),
        *_pinned_pool(policy, doc.pool),
    )
    if not allows(policy, doc.tee):
        allowed = ", ".join(sorted(policy.policy.allowed_tee))
        return refused(
            *own, Check("policy.tee_allowed", "failed", f"{doc.tee} (allowed: {allowed})")
        )
    try:
        verdict = verify_document(
            doc, now=now, policy=policy.policy, trust=policy.trust, issued_at=issued_at
        )
    except AttestationError as exc:
        return refused(*own, Check(exc.check, "failed", exc.detail))
    except (ValueError, TypeError, IndexError) as exc:  # hostile bytes no parser named
        return refused(*own, Check("evidence.document", "failed", type(exc).__name__))
    checks = (*own, *verdict.checks)
    binding = [c.status for c in checks if c.name == "binding.report_data"]
    if "passed" not in binding and "failed" not in binding:  # never accept an unbound key
        checks = (*checks, Check("binding.report_data", "failed", "the binding was not checked"))
    if any(c.status == "failed" for c in checks):
        return refused(*checks)
    claims = verdict.claims
    return VerifiedEnclave(
        pool=pool,
        endpoint_id=endpoint_id,
        tee=doc.tee,
        measurement=str(claims.get("measurement") or claims.get("mrtd") or ""),
        chip_id=str(claims.get("chip_id") or ""),
        hpke_public=hpke_public,
        signing_public=signing_public,
        hpke_key_sha256=hpke_sha,
        signing_key_sha256=signing_sha,
        verified_at=now,
        pricing=entry.get("pricing") if isinstance(entry.get("pricing"), Mapping) else None,
        checks=checks,
    )


def _listed_pool(entry: Mapping[str, Any], bound: str | None) -> Check:
    """The gateway lists each endpoint under its pool; evidence binding a pool must be of
    that pool, so a pool's price or name is never shown for another pool's enclave."""
    namespace, name = _text(entry.get("namespace")), _text(entry.get("pool"))
    listed = f"{namespace}/{name}" if namespace else name
    if bound is None:
        return Check("entry.pool", "not_checked", f"listed {listed}; the evidence binds no pool")
    return Check.of("entry.pool", listed == bound, f"listed {listed}, evidence binds {bound}")


def _pinned_pool(policy: ClientPolicy, bound: str | None) -> tuple[Check, ...]:
    if policy.pools is None:
        return ()
    allowed = ", ".join(sorted(policy.pools))
    return (
        Check.of(
            "policy.pool", bound in policy.pools, f"{bound or 'no pool'} (allowed: {allowed})"
        ),
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _key(text: str, name: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceInvalid("evidence.document", f"{name} is not base64") from None
    if len(raw) != KEY_LENGTH:
        raise EvidenceInvalid("evidence.document", f"{name} is not a {KEY_LENGTH}-byte key")
    return raw


def _nonce_is(text: str, nonce: bytes) -> bool:
    try:
        return secrets.compare_digest(base64.b64decode(text, validate=True), nonce)
    except (binascii.Error, ValueError):
        return False


# --- asking the gateway -----------------------------------------------------------------


class Attestor:
    """Challenges a model's enclaves through the gateway and keeps the verified ones for
    min(maxEvidenceAge, 5 min). Thread-safe: concurrent requests for a model share one round."""

    def __init__(
        self,
        http: httpx.Client,
        gateway_url: str,
        policy: ClientPolicy,
        clock: Clock = utc_now,
    ) -> None:
        self._http = http
        self._url = gateway_url
        self.policy = policy
        self._clock = clock
        self._cache: dict[str, Attestation] = {}
        self._lock = threading.Lock()
        self._rounds: dict[str, threading.Lock] = {}

    def attest(self, model: str, api_key: str | None, fresh: bool = False) -> Attestation:
        """The model's enclaves: from the cache while it is young enough, else a new round."""
        with self._lock:
            round_lock = self._rounds.setdefault(model, threading.Lock())
        with round_lock:
            cached = None if fresh else self._cached(model)
            if cached is not None:
                return cached
            result = self.fetch(model, api_key)
            with self._lock:
                if result.verified:
                    self._cache[model] = result
                else:
                    self._cache.pop(model, None)
            return result

    def _cached(self, model: str) -> Attestation | None:
        with self._lock:
            cached = self._cache.get(model)
        if cached is None or not cached.verified:
            return None
        age = self._clock() - cached.at
        if not dt.timedelta(0) <= age < self.policy.cache_ttl:
            return None
        return cached

    def forget(self, model: str, hpke_key_sha256: str) -> None:
        """Drops an enclave the gateway no longer routes to (it left or rotated its keys)."""
        with self._lock:
            cached = self._cache.get(model)
            if cached is None:
                return
            kept = tuple(v for v in cached.verified if v.hpke_key_sha256 != hpke_key_sha256)
            self._cache[model] = replace(cached, verified=kept)

    def fetch(self, model: str, api_key: str | None) -> Attestation:
        """One round: our nonce to every admitted endpoint of the model, each answer judged."""
        nonce = secrets.token_bytes(NONCE_SIZE)
        issued_at = self._clock()
        body = {"model": model, "nonce": base64.b64encode(nonce).decode("ascii")}
        headers = {**auth_headers(api_key), "Accept-Encoding": "identity"}
        try:
            with self._http.stream(
                "POST", self._url + ATTESTATIONS_PATH, json=body, headers=headers
            ) as answer:
                content = bounded_body(answer, MAX_LISTING)
        except httpx.TransportError as exc:
            raise GatewayUnreachable.of(self._url, exc) from exc
        if answer.status_code != 200:
            raise GatewayError(answer.status_code, content, passed_headers(answer.headers))
        try:
            listing = json.loads(content)
            entries = listing["data"]
            silent = listing.get("unavailable") or []
            if not isinstance(entries, list) or not isinstance(silent, list):
                raise TypeError("data is not a list")
        except (ValueError, TypeError, KeyError, AttributeError):
            entries, silent = [None], []  # judged as a malformed entry: named entry.format
        now = self._clock()
        judged = [
            judge(e, nonce=nonce, issued_at=issued_at, now=now, policy=self.policy) for e in entries
        ]
        judged += [  # endpoints the gateway could not get evidence from in time
            RefusedEnclave("", str(key), "", (UNAVAILABLE,)) for key in silent
        ]
        return Attestation(
            model=model,
            verified=tuple(j for j in judged if isinstance(j, VerifiedEnclave)),
            refused=tuple(j for j in judged if isinstance(j, RefusedEnclave)),
            at=now,
        )


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


PASSED_HEADERS = ("content-type", "retry-after", "x-request-id")


def bounded_body(answer: httpx.Response, limit: int) -> bytes:
    """A streamed answer's body up to `limit` bytes; a longer or compressed one reads as
    nothing (so it is judged malformed), and the rest of it is never read."""
    try:
        return read_capped(answer, limit, "the gateway's answer")
    except WireError:
        return b""


def passed_headers(headers: httpx.Headers) -> dict[str, str]:
    """The gateway's headers worth passing on with its error answers."""
    return {name: headers[name] for name in PASSED_HEADERS if name in headers}
