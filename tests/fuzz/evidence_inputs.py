"""Valid evidence to mutate: the real SEV-SNP, TDX and NVIDIA vectors (/work/shared/vectors,
or TEEROUTE_VECTORS) with Intel's real collateral, and a simulated TEE made here."""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from teeroute.attestation import simulated, tdx
from teeroute.attestation.policy import Challenge, Policy, bind

VECTORS = Path(os.environ.get("TEEROUTE_VECTORS", Path(__file__).parents[3] / "shared" / "vectors"))
SNP_REPORT = (VECTORS / "sev-snp" / "report-milan.bin").read_bytes()
SNP_VCEK = (VECTORS / "sev-snp" / "vcek-milan.der").read_bytes()
SNP_CHAIN = (VECTORS / "sev-snp" / "ask_ark_milan.pem").read_bytes()
SNP_NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)

TDX_DIR = VECTORS / "tdx"
TDX_QUOTE = (TDX_DIR / "quote-v4-spr-e4.dat").read_bytes()
TDX_NOW = dt.datetime(2023, 6, 20, tzinfo=dt.UTC)  # when the sample collateral was current
TCB_INFO = (TDX_DIR / "tcbinfo-response.json").read_bytes()
QE_IDENTITY = (TDX_DIR / "qeidentity-response.json").read_bytes()
ROOT_CRL = (TDX_DIR / "root-crl.der").read_bytes()
PCK_CRL = (TDX_DIR / "pck-crl.der").read_bytes()
_INTEL_CHAIN = Path(__file__).parents[1] / "attestation" / "vectors" / "tcb-signing-chain.pem"
TCB_SIGNING_CHAIN = _INTEL_CHAIN.read_bytes()
TDX_COLLATERAL = tdx.Collateral.from_files(
    TCB_INFO, QE_IDENTITY, ROOT_CRL, PCK_CRL, TCB_SIGNING_CHAIN
)
TDX_CRYPTO = (
    "tdx.chain.root_pinned",
    "tdx.chain.ca_signed_by_root",
    "tdx.chain.pck_signed_by_ca",
    "tdx.qe_report.signature",
    "tdx.qe_report.binds_attestation_key",
    "tdx.quote.signature",
)
"""The checks that together mean "Intel's hardware signed exactly these bytes"."""

NVIDIA_DIR = VECTORS / "nvidia"
GPU_REPORT = bytes.fromhex((NVIDIA_DIR / "hopper-attestation-report.hex").read_text().strip())
GPU_CHAIN = (NVIDIA_DIR / "hopper-cert-chain.pem").read_bytes()
GPU_NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
GPU_NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)

SIM_NOW = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)
SIM_ROOT, _SIM_ROOT_KEY = simulated.new_root(SIM_NOW)
SIM_CHIP, SIM_CHIP_KEY = simulated.issue_chip(SIM_ROOT, _SIM_ROOT_KEY, "fuzz-node", SIM_NOW)
SIM_ROOT_PEM = SIM_ROOT.public_bytes(Encoding.PEM)
SIM_CHIP_PEM = SIM_CHIP.public_bytes(Encoding.PEM)
SIM_MEASUREMENT = bytes(range(48))
SIM_NONCE = b"\x07" * 32
SIM_HPKE, SIM_SIGNING = b"h" * 32, b"s" * 32
SIM_POLICY = Policy(
    allowed_tee=frozenset({"simulated"}),
    allowed_measurements=frozenset({SIM_MEASUREMENT.hex()}),
    max_age=dt.timedelta(minutes=5),
)
SIM_CHALLENGE = Challenge(SIM_NONCE, SIM_NOW, SIM_HPKE, SIM_SIGNING)
SIM_REPORT = simulated.make_report(
    SIM_CHIP_KEY, measurement=SIM_MEASUREMENT, report_data=bind(SIM_NONCE, SIM_HPKE, SIM_SIGNING)
)


def sim_document() -> dict[str, Any]:
    """A simulated enclave's evidence document (JSON), valid under SIM_POLICY at SIM_NOW."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "tee": "simulated",
        "nonce": b64(SIM_NONCE),
        "evidence": b64(SIM_REPORT),
        "certificates": [SIM_CHIP_PEM.decode()],
        "enclave_keys": {"hpke": b64(SIM_HPKE), "signing": b64(SIM_SIGNING)},
        "produced_at": SIM_NOW.isoformat(),
    }
