"""What evidence must show to be accepted, and the checks that judge it against that.

One field per check; None means "not checked" (reported as such, never as passed). The
simulated TEE is accepted only where `allowed_tee` names it: the default does not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from teeroute.api.common import parse_duration
from teeroute.attestation.verdict import Check

HARDWARE_TEES = frozenset({"sev-snp", "tdx"})


def bind(
    nonce: bytes, hpke_public: bytes, signing_public: bytes, release_public: bytes = b""
) -> bytes:
    """The 64 bytes of report_data that tie evidence to one challenge and to the enclave's
    keys: SHA-512(nonce ‖ HPKE public key ‖ signing public key [‖ pinned release key]). The
    release key (the operator's, whose signed secret releases alone the enclave accepts) is
    there only when the enclave pins one; every part has a fixed length (32 bytes)."""
    return hashlib.sha512(nonce + hpke_public + signing_public + release_public).digest()


GATEWAY_DOMAIN = b"teeroute/v1 gateway\0"


def bind_gateway(nonce: bytes, tls_spki_sha256: bytes) -> bytes:
    """The 64 bytes of report_data of a gateway's own evidence: SHA-512("teeroute/v1
    gateway" NUL, nonce, SHA-256 of its TLS certificate's SubjectPublicKeyInfo), so the TLS
    connection a client checked ends in the attested gateway. The prefix keeps it apart from
    `bind`: no gateway evidence passes for an enclave's, nor an enclave's for a gateway's."""
    if len(nonce) != 32 or len(tls_spki_sha256) != 32:
        raise ValueError("the nonce and the SPKI hash are 32 bytes each")
    return hashlib.sha512(GATEWAY_DOMAIN + nonce + tls_spki_sha256).digest()


@dataclass(frozen=True)
class Challenge:
    """What the verifier asked for: a fresh nonce, when, and the keys the enclave claims."""

    nonce: bytes
    issued_at: dt.datetime | None
    """When the verifier issued the nonce; None when it did not (e.g. a stored document)."""
    hpke_public: bytes
    signing_public: bytes
    release_public: bytes = b""
    """The release key the enclave says it pins (empty: none)."""

    @property
    def report_data(self) -> bytes:
        return bind(self.nonce, self.hpke_public, self.signing_public, self.release_public)


@dataclass(frozen=True)
class Policy:
    allowed_tee: frozenset[str] = HARDWARE_TEES
    allowed_measurements: frozenset[str] | None = None
    """Lowercase hex launch measurements; None: any (not checked)."""
    minimum_tcb: Mapping[str, int] | None = None
    """Minimum version per TCB component (names as the TEE reports them)."""
    debug_forbidden: bool | None = True
    max_age: dt.timedelta | None = None
    """How old the challenge may be when the evidence is judged."""

    @classmethod
    def authenticity_only(cls, tee: str) -> Policy:
        """Accept `tee` and judge nothing else: what `teeroute verify` does without a policy
        (so bindings are still checked, but measurements, TCB and debug are not)."""
        return cls(allowed_tee=frozenset({tee}), debug_forbidden=None)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Policy:
        """From the MinerPool attestation policy's shape (camelCase keys), as in a policy
        file; unknown keys are refused so a typo cannot silently disable a check."""
        known = {
            "allowedTee",
            "allowedMeasurements",
            "minimumTcb",
            "debugForbidden",
            "maxEvidenceAge",
            "reattestationInterval",
        }
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown policy keys: {', '.join(sorted(unknown))}")
        measurements = raw.get("allowedMeasurements")
        age = raw.get("maxEvidenceAge")
        return cls(
            allowed_tee=frozenset(raw.get("allowedTee", HARDWARE_TEES)),
            allowed_measurements=frozenset(m.lower() for m in measurements)
            if measurements
            else None,
            minimum_tcb=dict(raw["minimumTcb"]) if raw.get("minimumTcb") else None,
            debug_forbidden=raw.get("debugForbidden", True),
            max_age=parse_duration(age) if age else None,
        )


@dataclass(frozen=True)
class Claims:
    """What a parsed, signature-checked report says, in TEE-neutral terms."""

    tee: str
    measurement: bytes
    tcb: Mapping[str, int]
    debug: bool
    report_data: bytes


def policy_checks(
    policy: Policy, claims: Claims, challenge: Challenge | None, now: dt.datetime
) -> list[Check]:
    return [
        Check.of(
            "policy.tee_allowed",
            claims.tee in policy.allowed_tee,
            f"{claims.tee} (allowed: {', '.join(sorted(policy.allowed_tee))})",
        ),
        _measurement(policy, claims),
        _tcb(policy, claims),
        _debug(policy, claims),
        _binding(claims, challenge),
        _age(policy, challenge, now),
    ]


def _measurement(policy: Policy, claims: Claims) -> Check:
    seen = claims.measurement.hex()
    if policy.allowed_measurements is None:
        return Check("policy.measurement", "not_checked", f"no allowlist; seen {seen}")
    return Check.of("policy.measurement", seen in policy.allowed_measurements, f"seen {seen}")


def _tcb(policy: Policy, claims: Claims) -> Check:
    if not policy.minimum_tcb:
        return Check("policy.minimum_tcb", "not_checked", _tcb_text(claims.tcb))
    low = [
        f"{name} {claims.tcb.get(name, -1)} < {minimum}"
        for name, minimum in sorted(policy.minimum_tcb.items())
        if claims.tcb.get(name, -1) < minimum
    ]
    return Check.of("policy.minimum_tcb", not low, "; ".join(low) or _tcb_text(claims.tcb))


def _tcb_text(tcb: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tcb.items()))


def _debug(policy: Policy, claims: Claims) -> Check:
    if not policy.debug_forbidden:
        return Check("policy.debug_forbidden", "not_checked", f"debug={claims.debug}")
    return Check.of(
        "policy.debug_forbidden",
        not claims.debug,
        "the TEE's policy allows debugging" if claims.debug else "debug off",
    )


def _binding(claims: Claims, challenge: Challenge | None) -> Check:
    if challenge is None:
        return Check("binding.report_data", "not_checked", "no challenge to compare with")
    ok = claims.report_data == challenge.report_data
    return Check.of(
        "binding.report_data",
        ok,
        "binds the nonce and enclave keys"
        if ok
        else "report_data is not SHA-512(nonce ‖ hpke key ‖ signing key)",
    )


def _age(policy: Policy, challenge: Challenge | None, now: dt.datetime) -> Check:
    if challenge is None or challenge.issued_at is None or policy.max_age is None:
        return Check("freshness.age", "not_checked", "no challenge time or maximum age")
    age = now - challenge.issued_at
    return Check.of(
        "freshness.age",
        dt.timedelta(0) <= age <= policy.max_age,
        f"challenge issued {age.total_seconds():.0f} s ago "
        f"(max {policy.max_age.total_seconds():.0f} s)",
    )
