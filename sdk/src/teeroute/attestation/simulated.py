"""The simulated TEE: real cryptography, no hardware. For kind and sandbox clusters.

It mirrors SEV-SNP's shape so the same pipeline runs: a simulated vendor root CA signs a
per-node *chip* certificate; the chip key signs a fixed-layout report (measurement,
report_data, TCB, debug flag, policy). chip_id is SHA-512 of the chip's public key, so a
report cannot claim another chip. Evidence of this type is accepted only where a policy
names `simulated` in allowed_tee: the default policy does not, and the aks/gke presets never do.

Report layout (little-endian), signed over bytes 0x00-0xDF with ECDSA P-384 (SHA-384),
signature r‖s big-endian at 0xE0:
    0x00 magic "TRSIMRPT" · 0x08 version u32 (1) · 0x0C flags u32 (bit 0: debug) ·
    0x10 tcb u64 · 0x18 policy u64 · 0x20 measurement[48] · 0x50 report_data[64] ·
    0x90 chip_id[64] · 0xD0 reserved[16] (zero) · 0xE0 signature[96]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
)
from cryptography.x509.oid import NameOID

from teeroute.attestation import signatures, x509chain
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.policy import (
    Challenge,
    Claims,
    Policy,
    policy_checks,
    required_checks,
)
from teeroute.attestation.verdict import Check, Verdict

MAGIC = b"TRSIMRPT"
SIGNED_SIZE = 0xE0
REPORT_SIZE = SIGNED_SIZE + 96
DEBUG_FLAG = 1


@dataclass(frozen=True)
class SimReport:
    version: int
    debug: bool
    tcb: int
    policy: int
    measurement: bytes
    report_data: bytes
    chip_id: bytes
    signature: bytes
    signed: bytes


def chip_id_of(public_key: ec.EllipticCurvePublicKey) -> bytes:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha512(der).digest()


def new_root(
    now: dt.datetime, years: int = 10
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A simulated vendor root CA (the chart keeps its key in a Secret)."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "teeroute"),
            x509.NameAttribute(NameOID.COMMON_NAME, "teeroute simulated TEE root"),
        ]
    )
    cert = (
        _builder(name, name, key.public_key(), now, years)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA384())
    )
    return cert, key


def issue_chip(
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    node: str,
    now: dt.datetime,
    years: int = 5,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A chip key and its certificate for one simulated node."""
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "teeroute"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"simulated chip {node}"),
        ]
    )
    cert = (
        _builder(subject, root.subject, key.public_key(), now, years)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(root_key, hashes.SHA384())
    )
    return cert, key


def write_chip_dir(directory: Path, node: str, now: dt.datetime) -> Path:
    """A fresh simulated TEE on disk, in the layout the enclave agent reads (its
    TEEROUTE_SIMULATED_DIR): `root.crt`, `<node>.crt` and `<node>.key` (PKCS#8 PEM)."""
    directory.mkdir(parents=True, exist_ok=True)
    root, root_key = new_root(now)
    chip, chip_key = issue_chip(root, root_key, node, now)
    pem = serialization.Encoding.PEM
    (directory / "root.crt").write_bytes(root.public_bytes(pem))
    (directory / f"{node}.crt").write_bytes(chip.public_bytes(pem))
    (directory / f"{node}.key").write_bytes(
        chip_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: dt.datetime,
    years: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * years))
    )


def make_report(
    chip_key: ec.EllipticCurvePrivateKey,
    *,
    measurement: bytes,
    report_data: bytes,
    tcb: int = 1,
    debug: bool = False,
    policy: int = 0,
) -> bytes:
    """What the agent's simulated provider returns for a challenge."""
    if len(measurement) != 48 or len(report_data) != 64:
        raise ValueError("measurement is 48 bytes and report_data 64")
    body = (
        MAGIC
        + struct.pack("<IIQQ", 1, DEBUG_FLAG if debug else 0, tcb, policy)
        + measurement
        + report_data
        + chip_id_of(chip_key.public_key())
        + bytes(16)
    )
    r, s = decode_dss_signature(chip_key.sign(body, ec.ECDSA(hashes.SHA384())))
    return body + r.to_bytes(48, "big") + s.to_bytes(48, "big")


def parse_report(data: bytes) -> SimReport:
    if len(data) != REPORT_SIZE:
        raise EvidenceInvalid(
            "sim.parse", f"report is {len(data)} bytes; simulated reports are {REPORT_SIZE}"
        )
    if data[:8] != MAGIC:
        raise EvidenceInvalid("sim.parse", "not a simulated TEE report (bad magic)")
    version, flags, tcb, policy = struct.unpack_from("<IIQQ", data, 8)
    if version != 1:
        raise EvidenceInvalid("sim.parse", f"report version {version} is not supported")
    if flags & ~DEBUG_FLAG or any(data[0xD0:0xE0]):
        raise EvidenceInvalid("sim.parse", "reserved flags or bytes are set")
    return SimReport(
        version,
        bool(flags & DEBUG_FLAG),
        tcb,
        policy,
        data[0x20:0x50],
        data[0x50:0x90],
        data[0x90:0xD0],
        data[SIGNED_SIZE:],
        data[:SIGNED_SIZE],
    )


def verify(
    report_bytes: bytes,
    chip_cert_pem: bytes,
    root_pem: bytes,
    *,
    now: dt.datetime,
    policy: Policy | None = None,
    challenge: Challenge | None = None,
) -> Verdict:
    report = parse_report(report_bytes)
    (chip,) = _one(x509chain.load_pem_chain(chip_cert_pem, "sim.chip"))
    (root,) = _one(x509chain.load_pem_chain(root_pem, "sim.root"))
    claims = Claims(
        "simulated", report.measurement, {"tcb": report.tcb}, report.debug, report.report_data
    )
    chip_key = x509chain.public_key(chip)
    checks = [
        x509chain.issued_by("sim.chain.chip_signed_by_root", chip, root),
        x509chain.is_ca("sim.chain.ca_usage", [root]),
        x509chain.valid_at("sim.chain.validity", [chip, root], now),
        Check.of(
            "sim.chip_id_matches",
            isinstance(chip_key, ec.EllipticCurvePublicKey)
            and chip_id_of(chip_key) == report.chip_id,
            "chip_id is the chip key's hash",
        ),
        _signature(report, chip),
        *policy_checks(policy or Policy(), claims, challenge, now),
    ]
    required = required_checks(policy or Policy(), "simulated", challenge)
    return Verdict(
        "simulated",
        tuple(checks),
        {
            "measurement": report.measurement.hex(),
            "report_data": report.report_data.hex(),
            "chip_id": report.chip_id.hex(),
            "tcb": {"tcb": report.tcb},
            "debug": report.debug,
            "policy": hex(report.policy),
            "chip": chip.subject.rfc4514_string(),
        },
        required,
    )


def _one(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    if len(certs) != 1:
        raise EvidenceInvalid("sim.chain", f"expected one certificate, got {len(certs)}")
    return certs


def _signature(report: SimReport, chip: x509.Certificate) -> Check:
    r, s = signatures.halves(report.signature)
    return signatures.ecdsa_check(
        "sim.signature",
        x509chain.public_key(chip),
        report.signed,
        r,
        s,
        "secp384r1",
        "signed by the chip key",
    )
