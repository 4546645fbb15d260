"""Intel TDX quote v4 verification against a real SPR quote and Intel PCS collateral."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from teeroute import cli
from teeroute.attestation import tdx
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.policy import Policy
from teeroute.attestation.verdict import Verdict

from .test_snp import VECTORS

DIR = VECTORS.parent / "tdx"
QUOTE = (DIR / "quote-v4-spr-e4.dat").read_bytes()
TCB_INFO = json.loads((DIR / "tcbinfo-response.json").read_text())
NOW = dt.datetime(2023, 6, 20, tzinfo=dt.UTC)  # when the sample collateral was current
MRTD = (
    "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f"
    "22fc00b8dcd404bc10d5e119d7215cbb"
)
CRYPTO = (
    "tdx.chain.root_pinned",
    "tdx.chain.ca_signed_by_root",
    "tdx.chain.pck_signed_by_ca",
    "tdx.chain.validity",
    "tdx.qe_report.signature",
    "tdx.qe_report.binds_attestation_key",
    "tdx.quote.signature",
)


def collateral(tcb_info: dict[str, Any] | None = None) -> tdx.Collateral:
    info = tcb_info if tcb_info is not None else TCB_INFO
    return tdx.Collateral.from_files(
        json.dumps(info).encode(),
        (DIR / "qeidentity-response.json").read_bytes(),
        (DIR / "root-crl.der").read_bytes(),
        (DIR / "pck-crl.der").read_bytes(),
    )


def verify(quote: bytes = QUOTE, **kwargs: Any) -> Verdict:
    kwargs.setdefault("now", NOW)
    return tdx.verify(quote, **kwargs)


def levels_matching_this_platform(status: str) -> dict[str, Any]:
    """The sample TCB Info, with a first level this (older) platform meets."""
    info = copy.deepcopy(TCB_INFO)
    level = copy.deepcopy(info["tcbInfo"]["tcbLevels"][0])
    for i, svn in enumerate([3, 3, 2, 2, 2, 1, 0, 2]):
        level["tcb"]["sgxtcbcomponents"][i]["svn"] = svn
    level["tcb"]["tdxtcbcomponents"][2]["svn"] = 4
    level["tcbStatus"] = status
    info["tcbInfo"]["tcbLevels"].insert(0, level)
    return dict(info)


def test_the_real_quote_is_authentic() -> None:
    verdict = verify()
    assert all(verdict.status_of(name) == "passed" for name in CRYPTO), verdict.failed
    assert verdict.ok  # without collateral, what needs it is "not checked"
    assert verdict.status_of("tdx.tcb.status") == "not_checked"
    assert verdict.claims["mrtd"] == MRTD
    assert verdict.claims["fmspc"] == "50806f000000"


def test_with_collateral_crls_and_qe_identity_pass_and_the_old_platform_is_flagged() -> None:
    verdict = verify(collateral=collateral())
    assert verdict.status_of("tdx.crl.root") == "passed"
    assert verdict.status_of("tdx.crl.pck") == "passed"
    assert verdict.status_of("tdx.qe_identity") == "passed"
    assert verdict.status_of("tdx.collateral.signatures") == "not_checked"
    tcb = next(c for c in verdict.checks if c.name == "tdx.tcb.status")
    assert tcb.status == "failed" and "older than every level" in tcb.detail


@pytest.mark.parametrize(
    ("status", "ok"), [("UpToDate", True), ("OutOfDate", False), ("SWHardeningNeeded", False)]
)
def test_tcb_status_comes_from_the_matching_level(status: str, ok: bool) -> None:
    info = levels_matching_this_platform(status)
    verdict = verify(collateral=collateral(info["tcbInfo"] and info))
    check = next(c for c in verdict.checks if c.name == "tdx.tcb.status")
    assert (check.status == "passed") is ok and status in check.detail


def test_stale_collateral_or_another_platforms_is_rejected() -> None:
    later = verify(now=dt.datetime(2023, 8, 1, tzinfo=dt.UTC), collateral=collateral())
    assert later.status_of("tdx.crl.pck") == "failed"  # the PCK CRL expired 2023-07-08
    other = copy.deepcopy(TCB_INFO)
    other["tcbInfo"]["fmspc"] = "00906ed50000"
    verdict = verify(collateral=collateral(other))
    assert verdict.status_of("tdx.tcb.status") == "failed"


@pytest.mark.parametrize("offset", range(0, tdx.SIGNED, 5))
def test_changes_to_the_signed_quote_are_rejected(offset: int) -> None:
    corrupt = bytearray(QUOTE)
    corrupt[offset] ^= 0x01
    try:
        verdict = verify(bytes(corrupt))
    except EvidenceInvalid:
        return
    assert verdict.status_of("tdx.quote.signature") == "failed"


@pytest.mark.parametrize(
    ("offset", "failing"),
    [
        (tdx.SIGNED + 4 + 10, "tdx.quote.signature"),  # the signature itself
        (tdx.SIGNED + 4 + 64 + 5, "tdx.quote.signature"),  # the attestation key
        (tdx.SIGNED + 4 + 134 + 100, "tdx.qe_report.signature"),  # the QE report
        (tdx.SIGNED + 4 + 134 + 384 + 3, "tdx.qe_report.signature"),  # its signature
        (tdx.SIGNED + 4 + 134 + 450 + 2, "tdx.qe_report.binds_attestation_key"),  # auth data
    ],
)
def test_each_link_of_the_quote_is_checked(offset: int, failing: str) -> None:
    corrupt = bytearray(QUOTE)
    corrupt[offset] ^= 0x01
    assert verify(bytes(corrupt)).status_of(failing) == "failed"


def test_policy_on_mrtd_debug_and_tcb() -> None:
    ok = verify(
        policy=Policy(
            allowed_tee=frozenset({"tdx"}),
            allowed_measurements=frozenset({MRTD}),
            minimum_tcb={"teeTcbSvn0": 3},
        )
    )
    assert ok.ok
    bad = verify(
        policy=Policy(
            allowed_tee=frozenset({"tdx"}),
            allowed_measurements=frozenset({"00" * 48}),
            minimum_tcb={"teeTcbSvn2": 5},
        )
    )
    assert {c.name for c in bad.failed} == {"policy.measurement", "policy.minimum_tcb"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda q: q[:600], "too short"),
        (lambda q: (5).to_bytes(2, "little") + q[2:], "version 5"),
        (lambda q: q[:2] + (3).to_bytes(2, "little") + q[4:], "key type 3"),
        (lambda q: q[:4] + (0).to_bytes(4, "little") + q[8:], "TEE 0x0"),
        (
            lambda q: q[: tdx.SIGNED] + (99999).to_bytes(4, "little") + q[tdx.SIGNED + 4 :],
            "overruns",
        ),
    ],
)
def test_malformed_quotes_are_refused(mutate: Any, message: str) -> None:
    with pytest.raises(EvidenceInvalid, match=message):
        tdx.parse_quote(mutate(QUOTE))


def test_random_and_mutated_bytes_only_raise_typed_errors() -> None:
    rng = random.Random(3)
    for _ in range(300):
        sample = bytearray(QUOTE) if rng.random() < 0.8 else bytearray(rng.randbytes(5000))
        for _ in range(rng.randint(1, 6)):
            sample[rng.randrange(len(sample))] = rng.randrange(256)
        with contextlib.suppress(EvidenceInvalid):
            verify(bytes(sample))


def test_cli_with_a_collateral_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name in ("qeidentity-response.json", "root-crl.der", "pck-crl.der"):
        shutil.copy(DIR / name, tmp_path / name)
    code = cli.main(
        [
            "verify",
            "tdx",
            str(DIR / "quote-v4-spr-e4.dat"),
            "--collateral",
            str(tmp_path),
            "--at",
            "2023-06-20T00:00:00Z",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "tdx.crl.pck" in out and MRTD in out
    (tmp_path / "tcbinfo-response.json").write_text(json.dumps(TCB_INFO))
    assert (
        cli.main(
            [
                "verify",
                "tdx",
                str(DIR / "quote-v4-spr-e4.dat"),
                "--collateral",
                str(tmp_path),
                "--at",
                "2023-06-20T00:00:00Z",
            ]
        )
        == 1
    )
