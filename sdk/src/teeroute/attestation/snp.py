"""AMD SEV-SNP attestation reports: parse, verify (chain + signature), validate (policy).

Layout from the SEV-SNP ABI spec (1184 bytes, little-endian); the signature is ECDSA P-384
over bytes 0x000-0x29F, r and s each a 72-byte little-endian field at 0x2A0. The VCEK (or
VLEK) chains through the ASK (ASVK) to AMD's ARK for the product; the ARKs of Milan, Genoa
and Turin are pinned in roots/. A VCEK also carries the TCB it was issued for and the chip's
hwID: both must match the report.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass
from functools import cache
from importlib import resources

from cryptography import x509

from teeroute.attestation import signatures, x509chain
from teeroute.attestation.errors import CollateralUnavailable, EvidenceInvalid
from teeroute.attestation.policy import (
    Challenge,
    Claims,
    Policy,
    policy_checks,
    required_checks,
)
from teeroute.attestation.verdict import Check, Verdict

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SUPPORTED_VERSIONS = range(2, 6)
DEBUG_BIT = 1 << 19
SIGNING_KEYS = {0: "vcek", 1: "vlek", 7: "none"}
_AMD = "1.3.6.1.4.1.3704.1"
TCB_OIDS = {
    "bootloader": f"{_AMD}.3.1",
    "tee": f"{_AMD}.3.2",
    "snp": f"{_AMD}.3.3",
    "microcode": f"{_AMD}.3.8",
    "fmc": f"{_AMD}.3.9",
}
HWID_OID = f"{_AMD}.4"
ROOT_FILES = (
    "ask_ark_milan.pem",
    "ask_ark_genoa.pem",
    "ask_ark_turin_vcek.pem",
    "ask_ark_milan_vlek.pem",
    "ask_ark_genoa_vlek.pem",
    "ask_ark_turin_vlek.pem",
)


@dataclass(frozen=True)
class SnpReport:
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    signing_key: str
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    reported_tcb: int
    chip_id: bytes
    committed_tcb: int
    launch_tcb: int
    signature_r: int
    signature_s: int
    signed: bytes

    @property
    def debug(self) -> bool:
        return bool(self.policy & DEBUG_BIT)


def parse_report(data: bytes) -> SnpReport:
    """Bytes -> SnpReport; EvidenceInvalid naming what is wrong otherwise."""
    if len(data) != REPORT_SIZE:
        raise EvidenceInvalid(
            "snp.parse", f"report is {len(data)} bytes; SEV-SNP reports are {REPORT_SIZE}"
        )
    (version,) = struct.unpack_from("<I", data, 0x00)
    if version not in SUPPORTED_VERSIONS:
        raise EvidenceInvalid(
            "snp.parse", f"report version {version} is not supported (2 to 5 are)"
        )
    (sig_algo,) = struct.unpack_from("<I", data, 0x34)
    if sig_algo != 1:
        raise EvidenceInvalid(
            "snp.parse", f"signature algorithm {sig_algo}; only 1 (ECDSA P-384 with SHA-384) exists"
        )
    (vmpl,) = struct.unpack_from("<I", data, 0x30)
    if vmpl > 3:
        raise EvidenceInvalid("snp.parse", f"VMPL {vmpl} is out of range (0 to 3)")
    (key_info,) = struct.unpack_from("<I", data, 0x48)
    signing_key = SIGNING_KEYS.get((key_info >> 2) & 7)
    if signing_key is None:
        raise EvidenceInvalid("snp.parse", f"unknown signing key selector {(key_info >> 2) & 7}")
    r_field, s_field = data[0x2A0:0x2E8], data[0x2E8:0x330]
    if any(r_field[48:]) or any(s_field[48:]):
        raise EvidenceInvalid("snp.parse", "signature fields carry bytes beyond P-384's 48")

    def u64(offset: int) -> int:
        return int(struct.unpack_from("<Q", data, offset)[0])

    return SnpReport(
        version=version,
        guest_svn=struct.unpack_from("<I", data, 0x04)[0],
        policy=u64(0x08),
        family_id=data[0x10:0x20],
        image_id=data[0x20:0x30],
        vmpl=vmpl,
        signature_algo=sig_algo,
        current_tcb=u64(0x38),
        platform_info=u64(0x40),
        signing_key=signing_key,
        report_data=data[0x50:0x90],
        measurement=data[0x90:0xC0],
        host_data=data[0xC0:0xE0],
        id_key_digest=data[0xE0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        reported_tcb=u64(0x180),
        chip_id=data[0x1A0:0x1E0],
        committed_tcb=u64(0x1E0),
        launch_tcb=u64(0x1F0),
        signature_r=int.from_bytes(r_field, "little"),
        signature_s=int.from_bytes(s_field, "little"),
        signed=data[:SIGNED_SIZE],
    )


def decode_tcb(raw: int, product: str) -> dict[str, int]:
    """A TCB_VERSION's components; Turin moved them and added the FMC."""
    b = raw.to_bytes(8, "little")
    if product.startswith("Turin"):
        return {"fmc": b[0], "bootloader": b[1], "tee": b[2], "snp": b[3], "microcode": b[7]}
    return {"bootloader": b[0], "tee": b[1], "snp": b[6], "microcode": b[7]}


@cache
def builtin_chains() -> tuple[tuple[x509.Certificate, x509.Certificate], ...]:
    """(ASK or ASVK, ARK) for each product, as AMD publishes them."""
    chains = []
    for name in ROOT_FILES:
        pem = resources.files("teeroute.attestation").joinpath("roots", name).read_bytes()
        ask, ark = x509chain.load_pem_chain(pem, "snp.roots")
        chains.append((ask, ark))
    return tuple(chains)


def verify(
    report_bytes: bytes,
    cert_der: bytes,
    *,
    now: dt.datetime,
    chain_pem: bytes | None = None,
    policy: Policy | None = None,
    challenge: Challenge | None = None,
) -> Verdict:
    report = parse_report(report_bytes)
    if report.signing_key == "none":
        raise EvidenceInvalid("snp.parse", "the report is unsigned (no signing key)")
    cert = x509chain.load_der(cert_der, f"snp.{report.signing_key}")
    ask, ark = _chain_for(cert, chain_pem)
    product = _product(cert, ask)
    claims = Claims(
        "sev-snp",
        report.measurement,
        decode_tcb(report.reported_tcb, product),
        report.debug,
        report.report_data,
    )
    checks = [
        *_chain_checks(report, cert, ask, ark, now),
        *_cert_matches_report(report, cert, product),
        _signature(report, cert),
    ]
    required: frozenset[str] = frozenset()
    if policy is not None or challenge is not None:
        effective = policy or Policy.authenticity_only("sev-snp")
        checks += policy_checks(effective, claims, challenge, now)
        required = required_checks(effective, "sev-snp", challenge)
    return Verdict("sev-snp", tuple(checks), _claims(report, product, claims), required)


def _chain_for(
    cert: x509.Certificate, chain_pem: bytes | None
) -> tuple[x509.Certificate, x509.Certificate]:
    if chain_pem is not None:
        chain = x509chain.load_pem_chain(chain_pem, "snp.chain")
        if len(chain) != 2:
            raise EvidenceInvalid(
                "snp.chain", f"expected ASK then ARK, got {len(chain)} certificates"
            )
        return chain[0], chain[1]
    for ask, ark in builtin_chains():
        if ask.subject == cert.issuer:
            return ask, ark
    raise CollateralUnavailable(
        "snp.chain", f"no built-in AMD chain issues {cert.issuer.rfc4514_string()}: pass --chain"
    )


def _chain_checks(
    report: SnpReport,
    cert: x509.Certificate,
    ask: x509.Certificate,
    ark: x509.Certificate,
    now: dt.datetime,
) -> list[Check]:
    pinned = any(x509chain.same_key(ark, root) for _, root in builtin_chains())
    return [
        Check.of(
            "snp.chain.ark_pinned",
            pinned,
            "ARK is one of AMD's" if pinned else "ARK is not a pinned AMD root",
        ),
        x509chain.issued_by("snp.chain.ark_self_signed", ark, ark),
        x509chain.issued_by("snp.chain.ask_signed_by_ark", ask, ark),
        x509chain.issued_by(f"snp.chain.{report.signing_key}_signed_by_ask", cert, ask),
        x509chain.is_ca("snp.chain.ca_usage", [ask, ark]),
        x509chain.valid_at("snp.chain.validity", [cert, ask, ark], now),
    ]


def _cert_matches_report(report: SnpReport, cert: x509.Certificate, product: str) -> list[Check]:
    cert_tcb = {
        name: value
        for name, oid in TCB_OIDS.items()
        if (value := _int_extension(cert, oid)) is not None
    }
    report_tcb = decode_tcb(report.reported_tcb, product)
    differs = [
        f"{k}: certificate {v}, report {report_tcb.get(k)}"
        for k, v in sorted(cert_tcb.items())
        if report_tcb.get(k) != v
    ]
    checks = [
        Check.of(
            f"snp.{report.signing_key}.tcb_matches_report",
            bool(cert_tcb) and not differs,
            "; ".join(differs)
            or ("no TCB in the certificate" if not cert_tcb else "reported TCB matches"),
        )
    ]
    hwid = _raw_extension(cert, HWID_OID)
    if report.signing_key == "vlek" or hwid is None:
        checks.append(Check("snp.vcek.chip_id_matches", "not_checked", "a VLEK names no chip"))
    else:
        checks.append(
            Check.of(
                "snp.vcek.chip_id_matches", _octets(hwid) == report.chip_id, "hwID equals chip_id"
            )
        )
    return checks


def _signature(report: SnpReport, cert: x509.Certificate) -> Check:
    return signatures.ecdsa_check(
        "snp.signature",
        x509chain.public_key(cert),
        report.signed,
        report.signature_r,
        report.signature_s,
        "secp384r1",
        f"signed by the {report.signing_key.upper()}",
    )


def _product(cert: x509.Certificate, ask: x509.Certificate) -> str:
    for candidate in (cert, ask):
        for attr in candidate.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
            name = str(attr.value).rsplit("-", 1)[-1]
            if name in ("Milan", "Genoa", "Turin"):
                return name
    return "Milan"


def _raw_extension(cert: x509.Certificate, oid: str) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
    except x509.ExtensionNotFound:
        return None
    return ext.value if isinstance(ext, x509.UnrecognizedExtension) else None


def _int_extension(cert: x509.Certificate, oid: str) -> int | None:
    raw = _raw_extension(cert, oid)
    if raw is None or len(raw) < 3 or raw[0] != 0x02:  # DER INTEGER
        return None
    return int.from_bytes(raw[2 : 2 + raw[1]], "big")


def _octets(raw: bytes) -> bytes:
    return raw[2:] if len(raw) == 66 and raw[0] == 0x04 else raw  # OCTET STRING or bare


def _claims(report: SnpReport, product: str, claims: Claims) -> dict[str, object]:
    return {
        "product": product,
        "version": report.version,
        "measurement": report.measurement.hex(),
        "report_data": report.report_data.hex(),
        "host_data": report.host_data.hex(),
        "chip_id": report.chip_id.hex(),
        "policy": hex(report.policy),
        "debug": report.debug,
        "vmpl": report.vmpl,
        "signing_key": report.signing_key,
        "reported_tcb": dict(claims.tcb),
        "guest_svn": report.guest_svn,
    }
