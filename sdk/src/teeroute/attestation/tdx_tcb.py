"""What Intel's collateral says about one TDX quote: verify it, then judge the quote by it.

    tdx.collateral.signing_chain          the TCB Signing cert: issued by the pinned Intel SGX
                                          Root CA, valid at `now`, not revoked by the root CRL
    tdx.collateral.tcb_info_signature     ECDSA P-256 over the exact `tcbInfo` bytes
    tdx.collateral.qe_identity_signature  the same over the exact `enclaveIdentity` bytes
    tdx.crl.root / tdx.crl.pck            signed by the root / the PCK's CA, current, naming
                                          that issuer, not revoking the CA / the PCK
    tdx.tcb.status                        the platform's TCB level (PCK SGX components and
                                          PCESVN, TEE_TCB_SVN; for TDX 1.5 TEE_TCB_SVN_2 too)
                                          and the TDX module's level, converged as Intel's QVL
                                          does; the status must be one the policy accepts
    tdx.tdx_module                        MRSIGNERSEAM and SEAMATTRIBUTES are the module's
    tdx.qe_identity                       the quoting enclave is Intel's TD QE at an accepted level

Missing collateral leaves a check "not checked" (which fails the verdict unless the pool opted
out, policy.py); collateral that is present but not authentic, stale or for another platform
fails. Judgements use only collateral whose signature passed. Pure functions; tdx.py calls them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509

from teeroute.attestation import signatures, x509chain
from teeroute.attestation.tdx_collateral import (
    Collateral,
    Level,
    ModuleIdentity,
    QeIdentity,
    TcbInfo,
)
from teeroute.attestation.tdx_quote import QeReport, TdReport, TdxQuote
from teeroute.attestation.verdict import Check

TCB_SIGNER = "Intel SGX TCB Signing"
OUT_OF_DATE = frozenset({"OutOfDate", "OutOfDateConfigurationNeeded"})
RELAUNCH_FIXES = frozenset(
    {"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"}
)
D = TypeVar("D")


@dataclass(frozen=True)
class Platform:
    """What the PCK certificate's SGX extension says about the platform."""

    fmspc: bytes
    pce_id: bytes
    sgx_svns: tuple[int, ...]
    pce_svn: int


@dataclass(frozen=True)
class Context:
    quote: TdxQuote
    platform: Platform
    pck: x509.Certificate
    ca: x509.Certificate
    root: x509.Certificate
    """The pinned Intel SGX Root CA (not the quote's copy)."""
    accepted: frozenset[str]
    now: dt.datetime


def collateral_checks(ctx: Context, col: Collateral) -> list[Check]:
    chain = signing_chain(ctx, col)
    signer = _signer(col) if chain.status == "passed" else None
    tcb_sig = signature("tdx.collateral.tcb_info_signature", col.tcb_info, signer, chain)
    qe_sig = signature("tdx.collateral.qe_identity_signature", col.qe_identity, signer, chain)
    info = col.tcb_info if tcb_sig.status == "passed" else None
    return [
        chain,
        tcb_sig,
        qe_sig,
        crl("tdx.crl.root", col.root_crl, ctx.root, [ctx.ca, *_tcb_signer(col)], ctx.now),
        crl("tdx.crl.pck", col.pck_crl, ctx.ca, [ctx.pck], ctx.now),
        _gated("tdx.tcb.status", tcb_sig, info, lambda i: tcb_status(ctx, i)),
        _gated("tdx.tdx_module", tcb_sig, info, lambda i: module_identity(ctx.quote.report, i)),
        _gated(
            "tdx.qe_identity",
            qe_sig,
            col.qe_identity if qe_sig.status == "passed" else None,
            lambda q: qe_identity(ctx.quote.qe_report, q, ctx.accepted, ctx.now),
        ),
    ]


def signing_chain(ctx: Context, col: Collateral) -> Check:
    name = "tdx.collateral.signing_chain"
    if not col.signing_chain:
        return Check(name, "not_checked", "no TCB Signing chain supplied")
    signer = col.signing_chain[0]
    problems = []
    if _cn(signer) != TCB_SIGNER or x509chain.is_ca(name, [signer]).status == "passed":
        problems.append(f"the first certificate is {_cn(signer)!r}, not the {TCB_SIGNER} leaf")
    issued = x509chain.issued_by(name, signer, ctx.root)
    if issued.status != "passed":
        problems.append(issued.detail)
    valid = x509chain.valid_at(name, [signer], ctx.now)
    if valid.status != "passed":
        problems.append(valid.detail)
    return Check.of(name, not problems, "; ".join(problems) or f"{TCB_SIGNER} by the pinned root")


def signature(name: str, doc: TcbInfo | QeIdentity | None, signer: Any, chain: Check) -> Check:
    if doc is None:
        return Check(name, "not_checked", "not supplied")
    signed = doc.signed
    if signer is None:
        return Check(
            name, "not_checked" if chain.status == "not_checked" else "failed", "no trusted signer"
        )
    r, s = signatures.halves(signed.signature)
    return signatures.ecdsa_check(name, signer, signed.body, r, s, "secp256r1", TCB_SIGNER)


def crl(
    name: str,
    revocations: x509.CertificateRevocationList | None,
    issuer: x509.Certificate,
    subjects: Iterable[x509.Certificate],
    now: dt.datetime,
) -> Check:
    if revocations is None:
        return Check(name, "not_checked", "no CRL supplied")
    problems = []
    key = x509chain.public_key(issuer)
    if revocations.issuer != issuer.subject:
        problems.append(f"CRL of {revocations.issuer.rfc4514_string()}, not of the issuer")
    if key is None or not revocations.is_signature_valid(key):
        problems.append("CRL not signed by its issuer")
    last, following = revocations.last_update_utc, revocations.next_update_utc
    if following is None:
        problems.append("CRL has no nextUpdate")  # Intel's always do: no open-ended CRLs
    elif not last <= now <= following:
        problems.append(f"CRL valid {last:%Y-%m-%d}..{following:%Y-%m-%d}")
    for subject in subjects:
        if revocations.get_revoked_certificate_by_serial_number(subject.serial_number):
            problems.append(f"{_cn(subject)} is revoked")
    return Check.of(name, not problems, "; ".join(problems) or "not revoked")


def tcb_status(ctx: Context, info: TcbInfo) -> Check:
    name = "tdx.tcb.status"
    problems = _applies(ctx, info)
    if problems:
        return Check(name, "failed", "; ".join(problems))
    report = ctx.quote.report
    launch = evaluate(info, ctx.platform, report.tee_tcb_svn)
    if launch is None:
        return Check(name, "failed", "no TCB level matches: the platform is older than every level")
    status, advisories = launch
    if report.tee_tcb_svn_2 is not None and any(report.tee_tcb_svn_2):
        current = evaluate(info, ctx.platform, report.tee_tcb_svn_2)
        if current is None:
            return Check(name, "failed", "no TCB level matches TEE_TCB_SVN_2")
        status = relaunch(status, current[0])
        advisories = tuple(sorted({*advisories, *current[1]}))
    detail = status + (f" ({', '.join(advisories)})" if advisories else "")
    return Check.of(name, status in ctx.accepted, detail)


def _applies(ctx: Context, info: TcbInfo) -> list[str]:
    problems = []
    if info.id != "TDX" or info.version < 3:
        problems.append(f"TCB Info {info.id} v{info.version} is not TDX TCB Info v3")
    if info.fmspc != ctx.platform.fmspc or info.pce_id != ctx.platform.pce_id:
        problems.append(
            f"TCB Info is for FMSPC {info.fmspc.hex()}/PCEID {info.pce_id.hex()}, "
            f"not {ctx.platform.fmspc.hex()}/{ctx.platform.pce_id.hex()}"
        )
    if not info.issue_date <= ctx.now <= info.next_update:
        problems.append(f"TCB Info valid {info.issue_date:%Y-%m-%d}..{info.next_update:%Y-%m-%d}")
    return problems


def evaluate(
    info: TcbInfo, platform: Platform, tee_tcb_svn: bytes
) -> tuple[str, tuple[str, ...]] | None:
    """Intel's tdxEvaluateTCB for one TEE_TCB_SVN: the first level the platform meets (TDX
    components from byte 2 when the module major version, byte 1, is above 0: the module
    identity rates bytes 0 and 1 then), converged with the module's own level. None: no level."""
    major = tee_tcb_svn[1]
    start = 2 if major > 0 else 0
    for level in info.levels:
        if (
            _at_least(platform.sgx_svns, level.sgx_svns)
            and platform.pce_svn >= level.pce_svn
            and _at_least(tee_tcb_svn[start:], level.tdx_svns[start:])
        ):
            status, advisories = level.status, level.advisories
            if major > 0:
                module = _module_level(info, major, tee_tcb_svn[0])
                if module is None:
                    return None
                status = converge(status, module.status)
                advisories = tuple(sorted({*advisories, *module.advisories}))
            return status, advisories
    return None


def _at_least(have: Iterable[int], need: Iterable[int]) -> bool:
    return all(h >= n for h, n in zip(have, need, strict=True))


def _module_level(info: TcbInfo, major: int, minor: int) -> Level | None:
    identity = _module_for(info, major)
    if identity is None:
        return None
    return next((lv for lv in identity.levels if minor >= lv.isvsvn), None)


def _module_for(info: TcbInfo, major: int) -> ModuleIdentity | None:
    if major == 0:
        return info.module
    wanted = f"TDX_{major:02X}"
    return next((m for m in info.module_identities if m.id.upper() == wanted), None)


def converge(platform: str, component: str) -> str:
    """Intel's convergeTcbStatus: an OutOfDate component dates the platform, Revoked revokes."""
    if component == "Revoked":
        return "Revoked"
    if component == "OutOfDate":
        if platform in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return platform


def relaunch(launch: str, current: str) -> str:
    """Intel's checkForRelaunch (TDX 1.5): the TD launched on an out-of-date module that a
    TD-preserving update has since fixed keeps its launch TCB until relaunched."""
    if launch in OUT_OF_DATE and current in RELAUNCH_FIXES:
        configuration = "Configuration" in launch or "Configuration" in current
        return "TDRelaunchAdvisedConfigurationNeeded" if configuration else "TDRelaunchAdvised"
    return launch


def module_identity(report: TdReport, info: TcbInfo) -> Check:
    name = "tdx.tdx_module"
    identity = _module_for(info, report.tee_tcb_svn[1])
    if identity is None:
        major = report.tee_tcb_svn[1]
        return Check(name, "failed", f"TCB Info lists no TDX module of major version {major}")
    problems = []
    if report.mrsignerseam != identity.mrsigner:
        problems.append(f"MRSIGNERSEAM {report.mrsignerseam.hex()} is not {identity.id}'s")
    if _masked(report.seam_attributes, identity.attributes_mask) != _masked(
        identity.attributes, identity.attributes_mask
    ):
        problems.append(f"SEAMATTRIBUTES {report.seam_attributes.hex()} differ")
    return Check.of(name, not problems, "; ".join(problems) or f"the {identity.id} module")


def qe_identity(
    qe: QeReport, identity: QeIdentity, accepted: frozenset[str], now: dt.datetime
) -> Check:
    problems = []
    if identity.id != "TD_QE":
        problems.append(f"QE Identity is for {identity.id}, not TD_QE")
    if qe.mrsigner != identity.mrsigner:
        problems.append("MRSIGNER differs")
    if qe.isvprodid != identity.isvprodid:
        problems.append(f"ISVPRODID {qe.isvprodid} != {identity.isvprodid}")
    if qe.miscselect & identity.miscselect_mask != identity.miscselect & identity.miscselect_mask:
        problems.append("MISCSELECT differs")
    if _masked(qe.attributes, identity.attributes_mask) != _masked(
        identity.attributes, identity.attributes_mask
    ):
        problems.append("ATTRIBUTES differ")
    if not identity.issue_date <= now <= identity.next_update:
        problems.append(
            f"QE Identity valid {identity.issue_date:%Y-%m-%d}..{identity.next_update:%Y-%m-%d}"
        )
    level = next((lv for lv in identity.levels if qe.isvsvn >= lv.isvsvn), None)
    status = level.status if level else "no matching level"
    if status not in accepted:
        problems.append(f"QE TCB {status}")
    return Check.of("tdx.qe_identity", not problems, "; ".join(problems) or f"QE {status}")


def _masked(value: bytes, mask: bytes) -> bytes:
    return bytes(v & m for v, m in zip(value, mask, strict=True))


def _gated(name: str, sig: Check, doc: D | None, judge: Callable[[D], Check]) -> Check:
    """Judge `doc` only when its signature passed; otherwise say why not."""
    if doc is not None:
        return judge(doc)
    if sig.status == "failed":
        return Check(name, "failed", "its collateral is not authentic")
    return Check(name, "not_checked", f"no authenticated collateral ({sig.detail})")


def _signer(col: Collateral) -> Any:
    return x509chain.public_key(col.signing_chain[0]) if col.signing_chain else None


def _tcb_signer(col: Collateral) -> list[x509.Certificate]:
    return [col.signing_chain[0]] if col.signing_chain else []


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()
