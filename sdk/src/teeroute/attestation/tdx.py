"""Intel TDX quotes (versions 4 and 5): parse, verify, validate.

    tdx_quote.py        bytes -> TdxQuote (v4; v5 with a TDX 1.0 or TDX 1.5 TD report)
    tdx_collateral.py   Intel PCS collateral -> frozen types (exact signed bytes kept)
    tdx_tcb.py          collateral verified (signatures to the Intel SGX Root CA, CRLs) and the
                        quote judged by it (TCB level, TDX module, quoting enclave)
    this module         the pipeline: the quote's own chain and signatures, then the above,
                        then the policy (MRTD, RTMRs, MRCONFIGID, MROWNER, TCB, debug, binding)

The quote is signed by the attestation key; the QE report, signed by the PCK key, vouches for
that key (report_data[:32] = SHA-256(key ‖ auth data)); the PCK chains to Intel's pinned root.
Intel's collateral decides whether the platform, the TDX module and the QE are current: it is
required (policy.TDX_COLLATERAL_CHECKS), so a verdict without it is not ok unless the pool
explicitly opted out (`allowUncheckedCollateral`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import cache
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from teeroute.attestation import der, signatures, x509chain
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.policy import (
    UP_TO_DATE,
    Challenge,
    Claims,
    Policy,
    policy_checks,
    required_checks,
)
from teeroute.attestation.tdx_collateral import COLLATERAL_FILES, Collateral
from teeroute.attestation.tdx_quote import HEADER, TD10_REPORT, TdxQuote, parse_quote
from teeroute.attestation.tdx_tcb import Context, Platform, collateral_checks
from teeroute.attestation.verdict import Check, Verdict

SIGNED = HEADER + TD10_REPORT
"""The signed part of a v4 quote."""
SGX_EXT = "1.2.840.113741.1.13.1"

__all__ = ["COLLATERAL_FILES", "SIGNED", "Collateral", "parse_quote", "pinned_root", "verify"]


@cache
def pinned_root() -> x509.Certificate:
    pem = resources.files("teeroute.attestation").joinpath("roots", "intel-sgx-root-ca.pem")
    (root,) = x509chain.load_pem_chain(pem.read_bytes(), "tdx.root")
    return root


def verify(
    quote_bytes: bytes,
    *,
    now: dt.datetime,
    collateral: Collateral | None = None,
    policy: Policy | None = None,
    challenge: Challenge | None = None,
    root: x509.Certificate | None = None,
) -> Verdict:
    """`root` replaces the pinned Intel SGX Root CA (tests with their own chain only)."""
    quote = parse_quote(quote_bytes)
    chain = x509chain.load_pem_chain(quote.pck_chain_pem, "tdx.pck_chain")
    if len(chain) != 3:
        raise EvidenceInvalid("tdx.pck_chain", f"expected PCK, CA and root; got {len(chain)}")
    pck, ca, quoted_root = chain
    trusted = root or pinned_root()
    effective = policy or Policy.authenticity_only("tdx")
    # Accepting more statuses never means refusing the best one.
    accepted = effective.accepted_tcb_statuses | UP_TO_DATE
    ctx = Context(quote, platform(pck), pck, ca, trusted, accepted, now)
    report = quote.report
    claims = Claims(
        "tdx",
        report.mrtd,
        {f"teeTcbSvn{i}": v for i, v in enumerate(report.tee_tcb_svn)},
        report.debug,
        report.report_data,
        report.registers,
    )
    checks = [
        *_quote_checks(quote, pck, ca, quoted_root, trusted, now),
        *collateral_checks(ctx, collateral or Collateral()),
        *policy_checks(effective, claims, challenge, now),
    ]
    return Verdict(
        "tdx",
        tuple(checks),
        _claims(quote, pck, ctx.platform),
        required_checks(effective, "tdx", challenge),
    )


def _quote_checks(
    quote: TdxQuote,
    pck: x509.Certificate,
    ca: x509.Certificate,
    quoted_root: x509.Certificate,
    trusted: x509.Certificate,
    now: dt.datetime,
) -> list[Check]:
    return [
        Check.of(
            "tdx.chain.root_pinned",
            x509chain.same_key(quoted_root, trusted),
            "ends at the Intel SGX Root CA",
        ),
        x509chain.issued_by("tdx.chain.ca_signed_by_root", ca, trusted),
        x509chain.issued_by("tdx.chain.pck_signed_by_ca", pck, ca),
        x509chain.valid_at("tdx.chain.validity", [pck, ca, trusted], now),
        _ecdsa(
            "tdx.qe_report.signature",
            x509chain.public_key(pck),
            quote.qe_report.raw,
            quote.qe_report_signature,
        ),
        _key_binding(quote),
        _ecdsa(
            "tdx.quote.signature", _raw_p256(quote.attestation_key), quote.signed, quote.signature
        ),
    ]


def _claims(quote: TdxQuote, pck: x509.Certificate, info: Platform) -> dict[str, Any]:
    report = quote.report
    claims: dict[str, Any] = {
        "version": quote.version,
        "tdx_module": "1.5" if report.tee_tcb_svn_2 is not None else "1.0",
        "mrtd": report.mrtd.hex(),
        "mrseam": report.mrseam.hex(),
        "rtmrs": [r.hex() for r in report.rtmrs],
        "mrconfigid": report.mrconfigid.hex(),
        "mrowner": report.mrowner.hex(),
        "report_data": report.report_data.hex(),
        "tee_tcb_svn": report.tee_tcb_svn.hex(),
        "td_attributes": report.td_attributes.hex(),
        "debug": report.debug,
        "fmspc": info.fmspc.hex(),
        "pck": pck.subject.rfc4514_string(),
        # The platform's identity: its PCK key (one per platform and TCB level).
        "chip_id": x509chain.key_id(pck),
        "trailing_bytes": quote.trailing,
    }
    if report.tee_tcb_svn_2 is not None and report.mrservicetd is not None:
        claims["tee_tcb_svn_2"] = report.tee_tcb_svn_2.hex()
        claims["mrservicetd"] = report.mrservicetd.hex()
    return claims


def _raw_p256(xy: bytes) -> ec.EllipticCurvePublicKey | None:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xy)
    except ValueError:
        return None


def _ecdsa(name: str, key: object, message: bytes, signature: bytes) -> Check:
    r, s = signatures.halves(signature)
    return signatures.ecdsa_check(name, key, message, r, s, "secp256r1", "")


def _key_binding(quote: TdxQuote) -> Check:
    expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest()
    data = quote.qe_report.report_data
    return Check.of(
        "tdx.qe_report.binds_attestation_key",
        data[:32] == expected and not any(data[32:]),
        "QE report_data = SHA-256(attestation key ‖ QE auth data)",
    )


def platform(pck: x509.Certificate) -> Platform:
    """FMSPC, PCE-ID, the 16 SGX TCB components and PCESVN from the PCK's SGX extension."""
    try:
        ext = pck.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXT)).value
        raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
        top = der.oid_map(der.one(raw, der.SEQUENCE))
        tcb = der.oid_map(top[f"{SGX_EXT}.2"][1])
        return Platform(
            fmspc=top[f"{SGX_EXT}.4"][1],
            pce_id=top[f"{SGX_EXT}.3"][1],
            sgx_svns=tuple(int.from_bytes(tcb[f"{SGX_EXT}.2.{i}"][1], "big") for i in range(1, 17)),
            pce_svn=int.from_bytes(tcb[f"{SGX_EXT}.2.17"][1], "big"),
        )
    except (x509.ExtensionNotFound, KeyError, ValueError) as exc:
        raise EvidenceInvalid("tdx.pck", f"the PCK certificate's SGX extension: {exc}") from exc
