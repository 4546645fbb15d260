"""NVIDIA Hopper confidential-computing GPU evidence: an SPDM 1.1 GET_MEASUREMENTS request
(carrying the verifier's 32-byte nonce) followed by the signed MEASUREMENTS response.

The response ends with an ECDSA P-384 signature (r‖s, big-endian) over SHA-384 of everything
before it, by the GPU's attestation key, whose certificate chains (leaf GSP FMC -> GSP BROM ->
Provisioner ICA -> GH100 Identity) to the pinned NVIDIA Device Identity CA. The leaf's DICE
TcbInfo extension ends with the firmware id (FWID) the report's opaque data declares.

Confidential-computing and devtools mode are not in this report (the driver reports them);
that check is "not checked" here, never passed. Golden measurements (RIMs) are not compared
yet: measurements are returned as claims.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import struct
from dataclasses import dataclass
from functools import cache
from importlib import resources

from cryptography import x509

from teeroute.attestation import signatures, x509chain
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.verdict import Check, Verdict

REQUEST_SIZE = 37
SIGNATURE_SIZE = 96
GET_MEASUREMENTS, MEASUREMENTS = 0xE0, 0x60
TCB_INFO_OID = "2.23.133.5.4.1"
OPAQUE_NAMES = {
    3: "driver_version",
    4: "gpu_info",
    6: "vbios_version",
    14: "board_id",
    15: "chip_sku",
    17: "project",
    18: "project_sku",
    20: "fwid",
    21: "protected_pcie_status",
}


@dataclass(frozen=True)
class GpuReport:
    spdm_version: int
    nonce: bytes
    response_nonce: bytes
    measurements: dict[int, bytes]
    opaque: dict[int, bytes]
    signature: bytes
    signed: bytes

    def text(self, field_id: int) -> str:
        return self.opaque.get(field_id, b"").rstrip(b"\0").decode(errors="replace")


def parse_report(data: bytes) -> GpuReport:
    if len(data) < REQUEST_SIZE + 8 + 32 + 2 + SIGNATURE_SIZE:
        raise EvidenceInvalid("nvidia.parse", f"report is {len(data)} bytes: too short")
    request, response = data[:REQUEST_SIZE], data[REQUEST_SIZE:]
    if request[1] != GET_MEASUREMENTS or response[1] != MEASUREMENTS:
        raise EvidenceInvalid("nvidia.parse", "not an SPDM GET_MEASUREMENTS/MEASUREMENTS pair")
    if request[0] != response[0] or request[0] < 0x11:
        raise EvidenceInvalid("nvidia.parse", f"SPDM versions {request[0]:#x}/{response[0]:#x}")
    count, record_len = response[4], int.from_bytes(response[5:8], "little")
    end = 8 + record_len
    if end + 32 + 2 > len(response):
        raise EvidenceInvalid("nvidia.parse", "measurement record overruns the report")
    measurements = _blocks(response[8:end], count)
    response_nonce = response[end : end + 32]
    (opaque_len,) = struct.unpack_from("<H", response, end + 32)
    opaque_start = end + 34
    if opaque_start + opaque_len + SIGNATURE_SIZE != len(response):
        raise EvidenceInvalid("nvidia.parse", "lengths do not add up to a signed response")
    return GpuReport(
        request[0],
        request[4:36],
        response_nonce,
        measurements,
        _tlvs(response[opaque_start : opaque_start + opaque_len]),
        data[-SIGNATURE_SIZE:],
        data[:-SIGNATURE_SIZE],
    )


def _blocks(record: bytes, count: int) -> dict[int, bytes]:
    blocks, offset = {}, 0
    while offset < len(record):
        if offset + 7 > len(record):
            raise EvidenceInvalid("nvidia.parse", "truncated measurement block")
        index, size = record[offset], int.from_bytes(record[offset + 2 : offset + 4], "little")
        value_size = int.from_bytes(record[offset + 5 : offset + 7], "little")
        if value_size + 3 != size or offset + 4 + size > len(record):
            raise EvidenceInvalid("nvidia.parse", f"measurement block {index} is malformed")
        blocks[index] = record[offset + 7 : offset + 4 + size]
        offset += 4 + size
    if len(blocks) != count:
        raise EvidenceInvalid(
            "nvidia.parse", f"{len(blocks)} measurement blocks, header says {count}"
        )
    return blocks


def _tlvs(data: bytes) -> dict[int, bytes]:
    fields, offset = {}, 0
    while offset + 4 <= len(data):
        kind, size = struct.unpack_from("<HH", data, offset)
        if offset + 4 + size > len(data):
            raise EvidenceInvalid("nvidia.parse", f"opaque field {kind} overruns the data")
        fields[kind] = data[offset + 4 : offset + 4 + size]
        offset += 4 + size
    if offset != len(data):
        raise EvidenceInvalid("nvidia.parse", "trailing bytes in the opaque data")
    return fields


@cache
def pinned_root() -> x509.Certificate:
    pem = resources.files("teeroute.attestation").joinpath("roots", "nvidia-device-root.pem")
    (root,) = x509chain.load_pem_chain(pem.read_bytes(), "nvidia.root")
    return root


def verify(
    report_bytes: bytes, chain_pem: bytes, *, now: dt.datetime, nonce: bytes | None = None
) -> Verdict:
    report = parse_report(report_bytes)
    chain = x509chain.load_pem_chain(chain_pem, "nvidia.chain")
    if len(chain) < 2:
        raise EvidenceInvalid("nvidia.chain", "expected the leaf first and at least its issuer")
    checks = [
        Check.of(
            "nvidia.chain.root_pinned",
            x509chain.same_key(chain[-1], pinned_root()),
            "ends at the NVIDIA Device Identity CA",
        ),
        *[
            x509chain.issued_by(f"nvidia.chain.link{i}", cert, issuer)
            for i, (cert, issuer) in enumerate(itertools.pairwise(chain))
        ],
        x509chain.valid_at("nvidia.chain.validity", chain, now),
        _fwid(report, chain[0]),
        _signature(report, chain[0]),
        _nonce(report, nonce),
        Check(
            "nvidia.cc_mode",
            "not_checked",
            "CC and devtools mode are reported by the driver, not in the SPDM report",
        ),
    ]
    return Verdict(
        "nvidia-hopper",
        tuple(checks),
        {
            "nonce": report.nonce.hex(),
            "driver_version": report.text(3),
            "vbios_version": report.opaque.get(6, b"").hex(),
            "project": report.text(17),
            "chip_sku": report.text(15),
            "fwid": report.opaque.get(20, b"").hex(),
            "measurements": len(report.measurements),
            "measurements_digest": hashlib.sha384(
                b"".join(report.measurements[i] for i in sorted(report.measurements))
            ).hexdigest(),
            "leaf": chain[0].subject.rfc4514_string(),
        },
    )


def _fwid(report: GpuReport, leaf: x509.Certificate) -> Check:
    fwid = report.opaque.get(20)
    try:
        ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(TCB_INFO_OID)).value
    except x509.ExtensionNotFound:
        return Check("nvidia.chain.fwid_matches", "failed", "the leaf has no DICE TcbInfo")
    raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
    ok = fwid is not None and len(fwid) == 48 and raw[-48:] == fwid
    return Check.of("nvidia.chain.fwid_matches", ok, "leaf TcbInfo ends with the report's FWID")


def _signature(report: GpuReport, leaf: x509.Certificate) -> Check:
    r, s = signatures.halves(report.signature)
    return signatures.ecdsa_check(
        "nvidia.signature",
        x509chain.public_key(leaf),
        report.signed,
        r,
        s,
        "secp384r1",
        "signed by the GPU's attestation key",
    )


def _nonce(report: GpuReport, expected: bytes | None) -> Check:
    if expected is None:
        return Check("nvidia.nonce", "not_checked", f"report carries {report.nonce.hex()}")
    return Check.of(
        "nvidia.nonce", report.nonce == expected, f"report carries {report.nonce.hex()}"
    )


def gpu_nonce(cpu_nonce: bytes) -> bytes:
    """The GPU's challenge, derived from the CPU's, so both answer the same challenge."""
    return hashlib.sha256(b"teeroute gpu nonce\0" + cpu_nonce).digest()
