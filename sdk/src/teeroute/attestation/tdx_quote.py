"""Intel TDX quotes, versions 4 and 5 (ECDSA-P256 attestation key): bytes -> frozen types.

    v4: header (48) | TD report (584)                              | signature data
    v5: header (48) | body type (u16) | body size (u32) | TD report | signature data
        body type 2: TDX 1.0 TD report (584 bytes); 3: TDX 1.5 TD report (648 bytes: the
        1.0 report, then TEE_TCB_SVN_2 (16) and MRSERVICETD (48))
    signature data: u32 length | signature (64, r‖s) | attestation key (64, x‖y) |
        certification data type 6: QE report (384) | QE report signature (64) |
        u16 auth length | auth data | certification data type 5: PEM chain PCK -> CA -> root

The attestation key signs everything before the signature data length (for v5 the body type
and size too). Parsing is strict: lengths must add up, else EvidenceInvalid("tdx.parse").
Called by tdx.py; nothing here checks a signature.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from teeroute.attestation.errors import EvidenceInvalid

HEADER = 48
TD10_REPORT, TD15_REPORT = 584, 648
BODY_TYPES = {2: TD10_REPORT, 3: TD15_REPORT}
"""v5 body type -> TD report size (type 1, an SGX enclave report, is not a TD's)."""
DESCRIPTOR = 6
TDX_TEE = 0x81
QE_REPORT = 384
MAX_QUOTE = 64 * 1024
"""Real quotes are about 5 kB (most of it the PCK chain); anything far larger is refused."""


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
class TdReport:
    tee_tcb_svn: bytes
    mrseam: bytes
    mrsignerseam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    mrownerconfig: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    tee_tcb_svn_2: bytes | None
    """TDX 1.5 only: the TCB of the TDX module running now (after a TD-preserving update)."""
    mrservicetd: bytes | None
    """TDX 1.5 only: the measurement of the service TDs bound to this TD."""

    @property
    def debug(self) -> bool:
        return bool(self.td_attributes[0] & 0x01)  # TUD.DEBUG

    @property
    def registers(self) -> dict[str, bytes]:
        """The registers a policy may pin (registers.py names them)."""
        named = {f"rtmr{i}": value for i, value in enumerate(self.rtmrs)}
        return {**named, "mrconfigid": self.mrconfigid, "mrowner": self.mrowner}


@dataclass(frozen=True)
class TdxQuote:
    version: int
    body_type: int
    """2: TDX 1.0 TD report; 3: TDX 1.5 (a v4 quote always carries a TDX 1.0 report)."""
    qe_vendor_id: bytes
    report: TdReport
    signature: bytes
    attestation_key: bytes
    qe_report: QeReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes
    signed: bytes
    trailing: int
    """Bytes after the quote in its buffer (padding): nothing signs them, nothing reads them."""


def parse_quote(data: bytes) -> TdxQuote:
    if len(data) > MAX_QUOTE:
        raise EvidenceInvalid("tdx.parse", f"quote is {len(data)} bytes: over {MAX_QUOTE}")
    if len(data) < HEADER + TD10_REPORT + 4 + 128 + 6:
        raise EvidenceInvalid("tdx.parse", f"quote is {len(data)} bytes: too short")
    version, key_type, tee = struct.unpack_from("<HHI", data, 0)
    if version not in (4, 5):
        raise EvidenceInvalid("tdx.parse", f"quote version {version} is not supported (4, 5 are)")
    if key_type != 2 or tee != TDX_TEE:
        raise EvidenceInvalid(
            "tdx.parse",
            f"attestation key type {key_type}, TEE {tee:#x}: "
            "expected ECDSA-P256 (2) and TDX (0x81)",
        )
    body_type, body_start, body_size = _body(data, version)
    signed_end = body_start + body_size
    (sig_len,) = struct.unpack_from("<I", data, signed_end)
    if sig_len > len(data) - signed_end - 4 or sig_len < 128 + 6:
        raise EvidenceInvalid("tdx.parse", "signature data overruns the quote")
    sig_data = data[signed_end + 4 : signed_end + 4 + sig_len]
    qe, qe_signature, auth, chain = _certification(sig_data[128:])
    return TdxQuote(
        version=version,
        body_type=body_type,
        qe_vendor_id=data[12:28],
        report=_td_report(data[body_start:signed_end]),
        signature=sig_data[:64],
        attestation_key=sig_data[64:128],
        qe_report=qe,
        qe_report_signature=qe_signature,
        qe_auth_data=auth,
        pck_chain_pem=chain,
        signed=data[:signed_end],
        trailing=len(data) - signed_end - 4 - sig_len,
    )


def _body(data: bytes, version: int) -> tuple[int, int, int]:
    """(body type, offset, size) of the TD report."""
    if version == 4:
        return 2, HEADER, TD10_REPORT
    body_type, size = struct.unpack_from("<HI", data, HEADER)
    if BODY_TYPES.get(body_type) != size:
        raise EvidenceInvalid(
            "tdx.parse",
            f"v5 body type {body_type} of {size} bytes: expected a TDX 1.0 (2, {TD10_REPORT}) "
            f"or TDX 1.5 (3, {TD15_REPORT}) TD report",
        )
    if HEADER + DESCRIPTOR + size + 4 > len(data):
        raise EvidenceInvalid("tdx.parse", "the TD report overruns the quote")
    return body_type, HEADER + DESCRIPTOR, size


def _td_report(b: bytes) -> TdReport:
    td15 = len(b) == TD15_REPORT
    return TdReport(
        tee_tcb_svn=b[0:16],
        mrseam=b[16:64],
        mrsignerseam=b[64:112],
        seam_attributes=b[112:120],
        td_attributes=b[120:128],
        xfam=b[128:136],
        mrtd=b[136:184],
        mrconfigid=b[184:232],
        mrowner=b[232:280],
        mrownerconfig=b[280:328],
        rtmrs=(b[328:376], b[376:424], b[424:472], b[472:520]),
        report_data=b[520:584],
        tee_tcb_svn_2=b[584:600] if td15 else None,
        mrservicetd=b[600:648] if td15 else None,
    )


def _certification(data: bytes) -> tuple[QeReport, bytes, bytes, bytes]:
    kind, size = struct.unpack_from("<HI", data, 0)
    body = data[6:]
    if kind != 6 or size != len(body) or size < QE_REPORT + 64 + 2:
        raise EvidenceInvalid(
            "tdx.parse",
            f"certification data type {kind} of {size} bytes: expected a QE report (type 6)",
        )
    (auth_len,) = struct.unpack_from("<H", body, QE_REPORT + 64)
    inner = body[QE_REPORT + 66 + auth_len :]
    if len(inner) < 6:
        raise EvidenceInvalid("tdx.parse", "no PCK certificate data")
    inner_kind, inner_size = struct.unpack_from("<HI", inner, 0)
    if inner_kind != 5 or inner_size != len(inner) - 6:
        raise EvidenceInvalid(
            "tdx.parse",
            f"inner certification data type {inner_kind}: expected the PCK chain (type 5)",
        )
    return (
        _qe_report(body[:QE_REPORT]),
        body[QE_REPORT : QE_REPORT + 64],
        body[QE_REPORT + 66 : QE_REPORT + 66 + auth_len],
        inner[6:].rstrip(b"\0"),
    )


def _qe_report(raw: bytes) -> QeReport:
    isvprodid, isvsvn = struct.unpack_from("<HH", raw, 256)
    return QeReport(
        cpusvn=raw[0:16],
        miscselect=struct.unpack_from("<I", raw, 16)[0],
        attributes=raw[48:64],
        mrenclave=raw[64:96],
        mrsigner=raw[128:160],
        isvprodid=isvprodid,
        isvsvn=isvsvn,
        report_data=raw[320:384],
        raw=raw,
    )
