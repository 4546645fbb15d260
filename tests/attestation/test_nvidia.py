"""NVIDIA H100 confidential-computing evidence against a real report and NVIDIA's root."""

from __future__ import annotations

import contextlib
import datetime as dt
import random

import pytest

from teeroute import cli
from teeroute.attestation import nvidia
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.verdict import Verdict

from .test_snp import VECTORS

DIR = VECTORS.parent / "nvidia"
REPORT = bytes.fromhex((DIR / "hopper-attestation-report.hex").read_text().strip())
CHAIN = (DIR / "hopper-cert-chain.pem").read_bytes()
NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def verify(report: bytes = REPORT, chain: bytes = CHAIN, nonce: bytes | None = NONCE) -> Verdict:
    return nvidia.verify(report, chain, now=NOW, nonce=nonce)


def test_the_real_report_verifies_and_says_what_it_did_not_check() -> None:
    verdict = verify()
    assert verdict.ok, verdict.failed
    assert verdict.status_of("nvidia.cc_mode") == "not_checked"
    assert verdict.claims["driver_version"] == "550.90.07"
    assert verdict.claims["measurements"] == 64


@pytest.mark.parametrize("offset", range(0, len(REPORT) - nvidia.SIGNATURE_SIZE, 7))
def test_changed_bytes_are_rejected(offset: int) -> None:
    corrupt = bytearray(REPORT)
    corrupt[offset] ^= 0x01
    try:
        verdict = verify(bytes(corrupt))
    except EvidenceInvalid:
        return
    assert verdict.status_of("nvidia.signature") == "failed"


def test_a_different_nonce_is_rejected() -> None:
    assert verify(nonce=b"\0" * 32).status_of("nvidia.nonce") == "failed"
    assert verify(nonce=None).status_of("nvidia.nonce") == "not_checked"


def test_a_chain_without_the_pinned_root_or_out_of_order_is_rejected() -> None:
    begin = b"-----BEGIN CERTIFICATE-----"
    certs = [begin + c for c in CHAIN.split(begin)[1:]]
    no_root = verify(chain=b"".join(certs[:-1]))
    assert no_root.status_of("nvidia.chain.root_pinned") == "failed"
    swapped = verify(chain=b"".join([certs[1], certs[0], *certs[2:]]))
    assert swapped.status_of("nvidia.chain.link0") == "failed"
    assert swapped.status_of("nvidia.signature") == "failed"


def test_the_gpu_nonce_is_derived_from_the_cpu_challenge() -> None:
    assert nvidia.gpu_nonce(b"a" * 32) == nvidia.gpu_nonce(b"a" * 32)
    assert nvidia.gpu_nonce(b"a" * 32) != nvidia.gpu_nonce(b"b" * 32)
    assert len(nvidia.gpu_nonce(b"a" * 32)) == 32


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r[:100], "too short"),
        (lambda r: r[:1] + b"\x00" + r[2:], "not an SPDM"),
        (lambda r: r + b"\0", "do not add up"),
        (lambda r: r[:-100], "do not add up"),
    ],
)
def test_malformed_reports_are_refused(mutate: object, message: str) -> None:
    with pytest.raises(EvidenceInvalid, match=message):
        nvidia.parse_report(mutate(REPORT))  # type: ignore[operator]


def test_random_and_mutated_bytes_only_raise_typed_errors() -> None:
    rng = random.Random(7)
    for _ in range(400):
        sample = bytearray(REPORT) if rng.random() < 0.7 else bytearray(rng.randbytes(800))
        for _ in range(rng.randint(1, 6)):
            sample[rng.randrange(len(sample))] = rng.randrange(256)
        with contextlib.suppress(EvidenceInvalid):
            verify(bytes(sample))


def test_cli_verifies_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        [
            "verify",
            "nvidia",
            str(DIR / "hopper-attestation-report.hex"),
            "--chain",
            str(DIR / "hopper-cert-chain.pem"),
            "--nonce",
            NONCE.hex(),
            "--at",
            "2025-06-01T00:00:00Z",
        ]
    )
    assert code == 0
    assert "nvidia.cc_mode" in capsys.readouterr().out
    assert (
        cli.main(
            [
                "verify",
                "nvidia",
                str(DIR / "hopper-attestation-report.hex"),
                "--chain",
                str(DIR / "hopper-cert-chain.pem"),
                "--nonce",
                "00" * 32,
            ]
        )
        == 1
    )
