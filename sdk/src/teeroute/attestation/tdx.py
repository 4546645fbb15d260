"""Intel TDX quotes (version 4, ECDSA-P256 attestation key): parse, verify, validate.

    header (48) | TD report body (584) | u32 signature-data length |
    signature (64, r‖s) | attestation key (64, x‖y) | certification data type 6:
        QE report (384) | QE report signature (64) | u16 auth length | auth data |
        certification data type 5: PEM chain PCK -> PCK Platform/Processor CA -> SGX Root CA

The quote is signed by the attestation key; the QE report, signed by the PCK key, vouches
for that key (report_data[:32] = SHA-256(key ‖ auth data)); the PCK chains to Intel's pinned
root. With collateral, CRLs revoke, TCB Info (matched by the PCK's FMSPC) gives the platform's
TCB status and QE Identity judges the quoting enclave. The collateral's own signatures need
Intel's TCB-signing chain; without it those checks say "not checked".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from teeroute.attestation import der, signatures, x509chain
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.policy import Challenge, Claims, Policy, policy_checks
from teeroute.attestation.verdict import Check, Verdict

HEADER, BODY = 48, 584
SIGNED = HEADER + BODY
TDX_TEE = 0x81
SGX_EXT = "1.2.840.113741.1.13.1"
ACCEPTED_TCB = frozenset({"UpToDate"})


@dataclass(frozen=True)
class QeReport:
    cpusvn: bytes
    miscselect: int
    attributes: bytes
    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int
    isvsvn: int
    report_data: bytes
    raw: bytes


@dataclass(frozen=True)
class TdxQuote:
    version: int
    qe_vendor_id: bytes
    tee_tcb_svn: bytes
    mrseam: bytes
    td_attributes: bytes
    xfam: bytes
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    signature: bytes
    attestation_key: bytes
    qe_report: QeReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes
    signed: bytes
    trailing: int

    @property
    def debug(self) -> bool:
        return bool(self.td_attributes[0] & 0x01)  # TUD.DEBUG


def parse_quote(data: bytes) -> TdxQuote:
    if len(data) < SIGNED + 4 + 128 + 6:
        raise EvidenceInvalid("tdx.parse", f"quote is {len(data)} bytes: too short")
    version, key_type, tee = struct.unpack_from("<HHI", data, 0)
    if version != 4:
        raise EvidenceInvalid("tdx.parse", f"quote version {version} is not supported (4 is)")
    if key_type != 2 or tee != TDX_TEE:
        raise EvidenceInvalid(
            "tdx.parse",
            f"attestation key type {key_type}, TEE {tee:#x}: "
            "expected ECDSA-P256 (2) and TDX (0x81)",
        )
    (sig_len,) = struct.unpack_from("<I", data, SIGNED)
    if sig_len > len(data) - SIGNED - 4:
        raise EvidenceInvalid("tdx.parse", "signature data overruns the quote")
    # Quote buffers may carry bytes after the quote (padding): no signature covers them and
    # nothing reads them; `trailing` counts them.
    sig_data = data[SIGNED + 4 : SIGNED + 4 + sig_len]
    qe = _certification(sig_data[128:])
    b = data[HEADER:SIGNED]
    return TdxQuote(
        version=version,
        qe_vendor_id=data[12:28],
        tee_tcb_svn=b[0:16],
        mrseam=b[16:64],
        td_attributes=b[120:128],
        xfam=b[128:136],
        mrtd=b[136:184],
        mrconfigid=b[184:232],
        mrowner=b[232:280],
        rtmrs=(b[328:376], b[376:424], b[424:472], b[472:520]),
        report_data=b[520:584],
        signature=sig_data[:64],
        attestation_key=sig_data[64:128],
        qe_report=qe[0],
        qe_report_signature=qe[1],
        qe_auth_data=qe[2],
        pck_chain_pem=qe[3],
        signed=data[:SIGNED],
        trailing=len(data) - SIGNED - 4 - sig_len,
    )


def _certification(data: bytes) -> tuple[QeReport, bytes, bytes, bytes]:
    kind, size = struct.unpack_from("<HI", data, 0)
    body = data[6:]
    if kind != 6 or size != len(body) or size < 384 + 64 + 2:
        raise EvidenceInvalid(
            "tdx.parse",
            f"certification data type {kind} of {size} bytes: expected a QE report (type 6)",
        )
    (auth_len,) = struct.unpack_from("<H", body, 448)
    inner = body[450 + auth_len :]
    if len(inner) < 6:
        raise EvidenceInvalid("tdx.parse", "no PCK certificate data")
    inner_kind, inner_size = struct.unpack_from("<HI", inner, 0)
    if inner_kind != 5 or inner_size != len(inner) - 6:
        raise EvidenceInvalid(
            "tdx.parse",
            f"inner certification data type {inner_kind}: expected the PCK chain (type 5)",
        )
    return (
        _qe_report(body[:384]),
        body[384:448],
        body[450 : 450 + auth_len],
        inner[6:].rstrip(b"\0"),
    )


def _qe_report(raw: bytes) -> QeReport:
    isvprodid, isvsvn = struct.unpack_from("<HH", raw, 256)
    return QeReport(
        raw[0:16],
        struct.unpack_from("<I", raw, 16)[0],
        raw[48:64],
        raw[64:96],
        raw[128:160],
        isvprodid,
        isvsvn,
        raw[320:384],
        raw,
    )


COLLATERAL_FILES = (
    "tcbinfo-response.json",
    "qeidentity-response.json",
    "root-crl.der",
    "pck-crl.der",
)


@dataclass(frozen=True)
class Collateral:
    """Intel PCS collateral for the quote's platform; any part may be missing."""

    tcb_info: Mapping[str, Any] | None = None
    qe_identity: Mapping[str, Any] | None = None
    root_crl: x509.CertificateRevocationList | None = None
    pck_crl: x509.CertificateRevocationList | None = None
    accepted_tcb: frozenset[str] = ACCEPTED_TCB

    @classmethod
    def from_files(
        cls,
        tcb_info: bytes | None = None,
        qe_identity: bytes | None = None,
        root_crl: bytes | None = None,
        pck_crl: bytes | None = None,
    ) -> Collateral:
        try:
            return cls(
                json.loads(tcb_info)["tcbInfo"] if tcb_info else None,
                json.loads(qe_identity)["enclaveIdentity"] if qe_identity else None,
                x509.load_der_x509_crl(root_crl) if root_crl else None,
                x509.load_der_x509_crl(pck_crl) if pck_crl else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise EvidenceInvalid("tdx.collateral", f"unreadable collateral: {exc}") from exc

    @classmethod
    def from_directory(cls, directory: Path) -> Collateral:
        """From Intel PCS responses saved in `directory` (any may be missing):
        tcbinfo-response.json, qeidentity-response.json, root-crl.der, pck-crl.der."""

        def part(name: str) -> bytes | None:
            path = directory / name
            try:
                return path.read_bytes() if path.exists() else None
            except OSError as exc:
                raise EvidenceInvalid("tdx.collateral", f"cannot read {path}: {exc}") from exc

        return cls.from_files(
            part(COLLATERAL_FILES[0]),
            part(COLLATERAL_FILES[1]),
            part(COLLATERAL_FILES[2]),
            part(COLLATERAL_FILES[3]),
        )


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
) -> Verdict:
    quote = parse_quote(quote_bytes)
    chain = x509chain.load_pem_chain(quote.pck_chain_pem, "tdx.pck_chain")
    if len(chain) != 3:
        raise EvidenceInvalid("tdx.pck_chain", f"expected PCK, CA and root; got {len(chain)}")
    pck, ca, root = chain
    col = collateral or Collateral()
    info = _pck_info(pck)
    checks = [
        Check.of(
            "tdx.chain.root_pinned",
            x509chain.same_key(root, pinned_root()),
            "ends at the Intel SGX Root CA",
        ),
        x509chain.issued_by("tdx.chain.ca_signed_by_root", ca, root),
        x509chain.issued_by("tdx.chain.pck_signed_by_ca", pck, ca),
        x509chain.valid_at("tdx.chain.validity", chain, now),
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
        _crl("tdx.crl.root", col.root_crl, root, ca, now),
        _crl("tdx.crl.pck", col.pck_crl, ca, pck, now),
        _tcb_status(quote, info, col, now),
        _qe_identity(quote.qe_report, col.qe_identity, now),
        Check(
            "tdx.collateral.signatures", "not_checked", "Intel's TCB-signing chain was not supplied"
        ),
    ]
    claims = Claims(
        "tdx",
        quote.mrtd,
        {f"teeTcbSvn{i}": v for i, v in enumerate(quote.tee_tcb_svn)},
        quote.debug,
        quote.report_data,
    )
    if policy is not None or challenge is not None:
        checks += policy_checks(
            policy or Policy.authenticity_only("tdx"),
            claims,
            challenge,
            now,
        )
    return Verdict(
        "tdx",
        tuple(checks),
        {
            "mrtd": quote.mrtd.hex(),
            "mrseam": quote.mrseam.hex(),
            "rtmrs": [r.hex() for r in quote.rtmrs],
            "report_data": quote.report_data.hex(),
            "tee_tcb_svn": quote.tee_tcb_svn.hex(),
            "td_attributes": quote.td_attributes.hex(),
            "debug": quote.debug,
            "fmspc": info["fmspc"].hex(),
            "pck": pck.subject.rfc4514_string(),
            # The platform's identity: its PCK key (one per platform and TCB level).
            "chip_id": x509chain.key_id(pck),
            "trailing_bytes": quote.trailing,
        },
    )


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


def _pck_info(pck: x509.Certificate) -> dict[str, Any]:
    try:
        ext = pck.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXT)).value
        raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
        top = der.oid_map(der.one(raw, der.SEQUENCE))
        tcb = der.oid_map(top[f"{SGX_EXT}.2"][1])
        return {
            "fmspc": top[f"{SGX_EXT}.4"][1],
            "components": [int.from_bytes(tcb[f"{SGX_EXT}.2.{i}"][1], "big") for i in range(1, 17)],
            "pcesvn": int.from_bytes(tcb[f"{SGX_EXT}.2.17"][1], "big"),
        }
    except (x509.ExtensionNotFound, KeyError, ValueError) as exc:
        raise EvidenceInvalid("tdx.pck", f"the PCK certificate's SGX extension: {exc}") from exc


def _crl(
    name: str,
    crl: x509.CertificateRevocationList | None,
    issuer: x509.Certificate,
    subject: x509.Certificate,
    now: dt.datetime,
) -> Check:
    if crl is None:
        return Check(name, "not_checked", "no CRL supplied")
    problems = []
    key = x509chain.public_key(issuer)
    if key is None or not crl.is_signature_valid(key):
        problems.append("CRL not signed by its issuer")
    if crl.next_update_utc is not None and not crl.last_update_utc <= now <= crl.next_update_utc:
        problems.append(f"CRL valid {crl.last_update_utc:%Y-%m-%d}..{crl.next_update_utc:%Y-%m-%d}")
    if crl.get_revoked_certificate_by_serial_number(subject.serial_number) is not None:
        problems.append(f"{subject.subject.rfc4514_string()} is revoked")
    return Check.of(name, not problems, "; ".join(problems) or "not revoked")


def _tcb_status(quote: TdxQuote, info: dict[str, Any], col: Collateral, now: dt.datetime) -> Check:
    tcb = col.tcb_info
    if tcb is None:
        return Check("tdx.tcb.status", "not_checked", "no TCB Info supplied")
    if bytes.fromhex(tcb["fmspc"]) != info["fmspc"] or tcb.get("id") != "TDX":
        return Check(
            "tdx.tcb.status",
            "failed",
            f"TCB Info is for FMSPC {tcb['fmspc']}, not {info['fmspc'].hex()}",
        )
    if _time(tcb["nextUpdate"]) < now:
        return Check("tdx.tcb.status", "failed", f"TCB Info expired {tcb['nextUpdate']}")
    for level in tcb["tcbLevels"]:
        t = level["tcb"]
        if (
            all(
                have >= c["svn"]
                for have, c in zip(info["components"], t["sgxtcbcomponents"], strict=False)
            )
            and info["pcesvn"] >= t["pcesvn"]
            and all(
                have >= c["svn"]
                for have, c in zip(quote.tee_tcb_svn, t["tdxtcbcomponents"], strict=False)
            )
        ):
            status = level["tcbStatus"]
            advisories = ", ".join(level.get("advisoryIDs", []))
            return Check.of(
                "tdx.tcb.status",
                status in col.accepted_tcb,
                f"{status}{' (' + advisories + ')' if advisories else ''}",
            )
    return Check(
        "tdx.tcb.status",
        "failed",
        "no TCB level matches: the platform is older than every level Intel lists",
    )


def _qe_identity(qe: QeReport, identity: Mapping[str, Any] | None, now: dt.datetime) -> Check:
    if identity is None:
        return Check("tdx.qe_identity", "not_checked", "no QE Identity supplied")
    problems = []
    if qe.mrsigner != bytes.fromhex(identity["mrsigner"]):
        problems.append("MRSIGNER differs")
    if qe.isvprodid != identity["isvprodid"]:
        problems.append(f"ISVPRODID {qe.isvprodid} != {identity['isvprodid']}")
    mask = int(identity["miscselectMask"], 16)
    if qe.miscselect & mask != int(identity["miscselect"], 16) & mask:
        problems.append("MISCSELECT differs")
    amask = bytes.fromhex(identity["attributesMask"])
    want = bytes.fromhex(identity["attributes"])
    if bytes(a & m for a, m in zip(qe.attributes, amask, strict=True)) != bytes(
        w & m for w, m in zip(want, amask, strict=True)
    ):
        problems.append("ATTRIBUTES differ")
    if _time(identity["nextUpdate"]) < now:
        problems.append(f"QE Identity expired {identity['nextUpdate']}")
    levels = [lv for lv in identity["tcbLevels"] if qe.isvsvn >= lv["tcb"]["isvsvn"]]
    status = levels[0]["tcbStatus"] if levels else "no matching level"
    if status != "UpToDate":
        problems.append(f"QE TCB {status}")
    return Check.of("tdx.qe_identity", not problems, "; ".join(problems) or "QE UpToDate")


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
