"""On every TEE type, a check the policy asked for that could not be performed fails the
verdict: "not checked" is never a pass. One row per TEE type, on real vectors (TDX, SEV-SNP,
NVIDIA) or the simulated TEE's real code, each naming the check that must now fail."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from teeroute.attestation import simulated, snp, tdx
from teeroute.attestation.policy import Challenge, Policy
from teeroute.attestation.verdict import Check, Verdict

from . import test_gpu_documents as gpu_docs
from . import test_simulated as sim
from . import test_snp, test_tdx

FIVE_MINUTES = dt.timedelta(minutes=5)


def tdx_without_collateral(_: Path) -> Verdict:
    return tdx.verify(test_tdx.QUOTE, now=test_tdx.NOW)


def snp_with_an_age_limit_and_no_challenge_time(_: Path) -> Verdict:
    policy = Policy(allowed_tee=frozenset({"sev-snp"}), debug_forbidden=None, max_age=FIVE_MINUTES)
    return snp.verify(test_snp.REPORT, test_snp.VCEK, now=test_snp.NOW, policy=policy)


def simulated_with_an_age_limit_and_no_challenge_time(_: Path) -> Verdict:
    undated = Challenge(
        sim.CHALLENGE.nonce, None, sim.CHALLENGE.hpke_public, sim.CHALLENGE.signing_public
    )
    return simulated.verify(
        sim.report(),
        sim.CHIP.public_bytes(Encoding.PEM),
        sim.ROOT.public_bytes(Encoding.PEM),
        now=sim.NOW,
        policy=sim.ALLOW,
        challenge=undated,
    )


def gpu_pool_with_nvidia_evidence(tmp_path: Path) -> Verdict:
    return gpu_docs.verify(tmp_path, require_gpu=True, gpu_evidence=gpu_docs.gpu_part())


def snp_under_a_tdx_register_pin(_: Path) -> Verdict:
    policy = Policy(
        allowed_tee=frozenset({"sev-snp"}),
        debug_forbidden=None,
        register_pins={"rtmr1": frozenset({"ab" * 48})},
    )
    return snp.verify(test_snp.REPORT, test_snp.VCEK, now=test_snp.NOW, policy=policy)


def simulated_under_a_tdx_register_pin(_: Path) -> Verdict:
    policy = Policy(
        allowed_tee=frozenset({"simulated"}), register_pins={"mrowner": frozenset({"ab" * 48})}
    )
    return simulated.verify(
        sim.report(),
        sim.CHIP.public_bytes(Encoding.PEM),
        sim.ROOT.public_bytes(Encoding.PEM),
        now=sim.NOW,
        policy=policy,
        challenge=sim.CHALLENGE,
    )


@pytest.mark.parametrize(
    ("case", "asked_for"),
    [
        (tdx_without_collateral, "tdx.tcb.status"),
        (tdx_without_collateral, "tdx.qe_identity"),
        (tdx_without_collateral, "tdx.crl.pck"),
        (tdx_without_collateral, "tdx.collateral.tcb_info_signature"),
        (snp_with_an_age_limit_and_no_challenge_time, "freshness.age"),
        (simulated_with_an_age_limit_and_no_challenge_time, "freshness.age"),
        (gpu_pool_with_nvidia_evidence, "gpu.nvidia.cc_mode"),
        (snp_under_a_tdx_register_pin, "policy.register.rtmr1"),
        (simulated_under_a_tdx_register_pin, "policy.register.mrowner"),
    ],
)
def test_a_check_the_policy_asked_for_is_never_passed_unchecked(
    tmp_path: Path, case: Callable[[Path], Verdict], asked_for: str
) -> None:
    verdict = case(tmp_path)
    assert verdict.status_of(asked_for) == "failed"
    assert asked_for in {c.name for c in verdict.failed}
    assert not verdict.ok
    assert verdict.to_json()["ok"] is False


def test_what_no_policy_asked_for_may_stay_not_checked() -> None:
    verdict = snp.verify(test_snp.REPORT, test_snp.VCEK, now=test_snp.NOW)
    assert verdict.ok
    assert verdict.status_of("snp.vcek.chip_id_matches") == "passed"
    lenient = Policy(allowed_tee=frozenset({"sev-snp"}), debug_forbidden=None)
    judged = snp.verify(test_snp.REPORT, test_snp.VCEK, now=test_snp.NOW, policy=lenient)
    assert judged.ok and judged.status_of("freshness.age") == "not_checked"


@pytest.mark.parametrize(
    ("checks", "ok"),
    [
        ((Check("a", "passed"),), True),
        ((Check("a", "not_checked"),), False),
        ((), False),  # a required check the verifier never produced
        ((Check("a", "passed"), Check("b", "not_checked")), True),  # b was not asked for
    ],
)
def test_a_verdict_fails_required_checks_that_did_not_pass(
    checks: tuple[Check, ...], ok: bool
) -> None:
    verdict = Verdict("any", checks, required=frozenset({"a"}))
    assert verdict.ok is ok
    if not ok:
        assert verdict.status_of("a") == "failed"
        assert "required by the policy" in verdict.failed[0].detail
