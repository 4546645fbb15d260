"""What evidence must show to be accepted, and the checks that judge it against that.

One field per check; None means "not checked" (reported as such, never as passed). The
simulated TEE is accepted only where `allowed_tee` names it: the default does not.
`required_checks` names what a policy asks for: the Verdict fails any of those that could not be
checked (verdict.py), so a missing collateral, challenge time or register is never a pass.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from teeroute.api.common import parse_duration
from teeroute.attestation import registers
from teeroute.attestation.verdict import Check

HARDWARE_TEES = frozenset({"sev-snp", "tdx"})
TDX_COLLATERAL_CHECKS = frozenset(
    {
        "tdx.collateral.signing_chain",
        "tdx.collateral.tcb_info_signature",
        "tdx.collateral.qe_identity_signature",
        "tdx.crl.root",
        "tdx.crl.pck",
        "tdx.tcb.status",
        "tdx.tdx_module",
        "tdx.qe_identity",
    }
)
"""What Intel's collateral decides: required of every TDX verdict unless a pool opts out."""
UP_TO_DATE = frozenset({"UpToDate"})


ENCLAVE_DOMAIN = b"teeroute/v1 enclave\0"
GATEWAY_KEY_SIZE = 32
"""A gateway key: a raw Ed25519 public key."""


def bind(
    nonce: bytes,
    hpke_public: bytes,
    signing_public: bytes,
    release_public: bytes = b"",
    pool: str = "",
    gateway_keys: tuple[bytes, ...] = (),
) -> bytes:
    """The 64 bytes of report_data that tie evidence to one challenge, to the enclave's keys,
    to the pool it serves and to the gateways it answers: SHA-512("teeroute/v1 enclave" NUL,
    then nonce, HPKE public key, signing public key, pinned release key, pool ("<namespace>/
    <name>", UTF-8), pinned gateway keys (the raw 32-byte Ed25519 keys, sorted, concatenated),
    each preceded by its length in 4 bytes, big-endian). The release key (the operator's,
    whose signed secret releases alone the enclave accepts), the pool and the gateway keys
    (the only signers whose requests the enclave answers) are empty when the enclave pins or
    serves none. The lengths keep every split of the parts apart; the pool makes evidence of
    one pool's enclave useless to another pool (docs/sealed-mode.md, section 4); the gateway
    keys let a verifier refuse an enclave that answers someone other than its gateway
    (section 8). The key set is sorted, so the order the enclave was given them in does not
    matter; a key of another size is refused (ValueError)."""
    if any(len(key) != GATEWAY_KEY_SIZE for key in gateway_keys):
        raise ValueError(f"gateway keys are {GATEWAY_KEY_SIZE} bytes each")
    gateways = b"".join(sorted(gateway_keys))
    parts = (nonce, hpke_public, signing_public, release_public, pool.encode(), gateways)
    framed = b"".join(len(part).to_bytes(4, "big") + part for part in parts)
    return hashlib.sha512(ENCLAVE_DOMAIN + framed).digest()


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
    pool: str = ""
    """The pool the enclave says it serves, "<namespace>/<name>" (empty: none)."""
    gateway_keys: tuple[bytes, ...] = ()
    """The gateway keys the enclave says it pins, raw (empty: none; it answers no one)."""

    @property
    def report_data(self) -> bytes:
        return bind(
            self.nonce,
            self.hpke_public,
            self.signing_public,
            self.release_public,
            self.pool,
            self.gateway_keys,
        )


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
    register_pins: Mapping[str, frozenset[str]] | None = None
    """Allowed values (lowercase hex) of measurement registers beyond the launch measurement,
    by register (TDX: rtmr0-rtmr3, mrconfigid, mrowner); None: not checked. Evidence without
    a pinned register (another TEE type) fails that pin."""
    accepted_tcb_statuses: frozenset[str] = UP_TO_DATE
    """Intel TCB statuses accepted for a TDX platform, TDX module and quoting enclave; any
    other status fails tdx.tcb.status / tdx.qe_identity."""
    allow_unchecked_collateral: bool = False
    """The explicit opt-out: TDX collateral checks that could not run (no collateral) do not
    fail the verdict. Collateral that is present is always checked."""

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
            "tdx",
            "allowUncheckedCollateral",
        }
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown policy keys: {', '.join(sorted(unknown))}")
        measurements = raw.get("allowedMeasurements")
        age = raw.get("maxEvidenceAge")
        pins, statuses = registers.from_tdx_mapping(raw.get("tdx") or {})
        unchecked = raw.get("allowUncheckedCollateral", False)
        if not isinstance(unchecked, bool):
            raise ValueError("allowUncheckedCollateral: expected true or false")
        return cls(
            register_pins=pins,
            accepted_tcb_statuses=statuses,
            allow_unchecked_collateral=unchecked,
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
    registers: Mapping[str, bytes] = field(default_factory=dict)
    """Measurement registers beyond the launch measurement (TDX: rtmr0-3, mrconfigid, mrowner)."""


def required_checks(policy: Policy, tee: str, challenge: Challenge | None) -> frozenset[str]:
    """The checks `policy` asks for on `tee` evidence: each must pass, "not checked" fails."""
    names = {"policy.tee_allowed"}
    if policy.allowed_measurements is not None:
        names.add("policy.measurement")
    if policy.minimum_tcb:
        names.add("policy.minimum_tcb")
    if policy.debug_forbidden:
        names.add("policy.debug_forbidden")
    if challenge is not None:  # without one, the caller binds the evidence otherwise
        names.add("binding.report_data")
    if policy.max_age is not None:  # a report with no challenge time cannot show its age
        names.add("freshness.age")
    names.update(registers.check_name(r) for r in policy.register_pins or {})
    if tee == "tdx" and not policy.allow_unchecked_collateral:
        names.update(TDX_COLLATERAL_CHECKS)
    return frozenset(names)


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
        *registers.checks(policy.register_pins, claims.tee, claims.registers),
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
        "binds the nonce, enclave keys, pool and gateway keys"
        if ok
        else "report_data is not the binding of the nonce, enclave keys, pool and gateway keys",
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
