"""Intel TDX quote verification against a real SPR quote (v4) and Intel's real PCS collateral.

Collateral checks live in test_tdx_collateral.py, quote v5 in test_tdx_v5.py, register pins
in test_tdx_policy.py."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from teeroute import cli
from teeroute.attestation import policy, tdx
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.policy import Policy
from teeroute.attestation.verdict import Verdict

from .test_snp import VECTORS

DIR = VECTORS.parent / "tdx"
QUOTE = (DIR / "quote-v4-spr-e4.dat").read_bytes()
TCB_INFO = json.loads((DIR / "tcbinfo-response.json").read_text())
SIGNING_CHAIN = Path(__file__).parent / "vectors" / "tcb-signing-chain.pem"
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


def collateral() -> tdx.Collateral:
    """Intel's real collateral for this platform, as the PCS served it (signatures intact)."""
    return tdx.Collateral.from_files(
        (DIR / "tcbinfo-response.json").read_bytes(),
        (DIR / "qeidentity-response.json").read_bytes(),
        (DIR / "root-crl.der").read_bytes(),
        (DIR / "pck-crl.der").read_bytes(),
        SIGNING_CHAIN.read_bytes(),
    )


def verify(quote: bytes = QUOTE, **kwargs: Any) -> Verdict:
    kwargs.setdefault("now", NOW)
    return tdx.verify(quote, **kwargs)


def test_the_real_quote_is_authentic_but_not_admitted_without_collateral() -> None:
    verdict = verify()
    assert all(verdict.status_of(name) == "passed" for name in CRYPTO), verdict.failed
    # Fail closed: TCB status, QE identity, CRLs and the collateral's signatures were asked
    # for (by default) and could not be checked, so they fail; before, the verdict was ok.
    assert not verdict.ok
    assert {c.name for c in verdict.failed} == policy.TDX_COLLATERAL_CHECKS
    assert "required by the policy but not checked" in next(
        c.detail for c in verdict.checks if c.name == "tdx.tcb.status"
    )
    assert verdict.claims["mrtd"] == MRTD
    assert verdict.claims["fmspc"] == "50806f000000"


def test_with_intels_collateral_everything_verifies_and_the_old_platform_is_flagged() -> None:
    verdict = verify(collateral=collateral())
    for name in policy.TDX_COLLATERAL_CHECKS - {"tdx.tcb.status"}:
        assert verdict.status_of(name) == "passed", name
    tcb = next(c for c in verdict.checks if c.name == "tdx.tcb.status")
    assert tcb.status == "failed" and "older than every level" in tcb.detail
    assert [c.name for c in verdict.failed] == ["tdx.tcb.status"]


def test_a_pool_that_opts_out_admits_without_collateral_but_checks_what_it_has() -> None:
    opted_out = Policy(allowed_tee=frozenset({"tdx"}), allow_unchecked_collateral=True)
    bare = verify(policy=opted_out)
    assert bare.ok
    assert bare.status_of("tdx.tcb.status") == "not_checked"
    # Collateral that is there is still checked: the old platform still fails.
    assert verify(policy=opted_out, collateral=collateral()).failed[0].name == "tdx.tcb.status"


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
            allow_unchecked_collateral=True,
        )
    )
    assert ok.ok
    bad = verify(
        policy=Policy(
            allowed_tee=frozenset({"tdx"}),
            allowed_measurements=frozenset({"00" * 48}),
            minimum_tcb={"teeTcbSvn2": 5},
            allow_unchecked_collateral=True,
        )
    )
    assert {c.name for c in bad.failed} == {"policy.measurement", "policy.minimum_tcb"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda q: q[:600], "too short"),
        (lambda q: (3).to_bytes(2, "little") + q[2:], "version 3"),
        (lambda q: (5).to_bytes(2, "little") + q[2:], "v5 body type"),
        (lambda q: q + bytes(70_000), "over 65536"),
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
    shutil.copy(SIGNING_CHAIN, tmp_path / SIGNING_CHAIN.name)
    args = ["verify", "tdx", str(DIR / "quote-v4-spr-e4.dat"), "--collateral", str(tmp_path)]
    args += ["--at", "2023-06-20T00:00:00Z"]
    # No TCB Info: its checks fail closed; the ones the directory allows pass.
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert "ok   tdx.crl.pck" in out and "FAIL tdx.tcb.status" in out and MRTD in out
    # A policy may opt out; then what could not be checked is shown as not checked.
    (tmp_path / "policy.yaml").write_text("allowUncheckedCollateral: true\n")
    assert cli.main([*args, "--policy", str(tmp_path / "policy.yaml")]) == 0
    assert "--   tdx.tcb.status" in capsys.readouterr().out
