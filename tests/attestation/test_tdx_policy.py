"""A pool can pin what a TD runs beyond MRTD: RTMR0-3, MRCONFIGID and MROWNER (real quote).

From the MinerPool's `attestation.tdx` through the operator's `pool_policy` to the verdict."""

from __future__ import annotations

from typing import Any

import pytest

from teeroute.api.minerpool import MinerPool
from teeroute.attestation import tdx
from teeroute.attestation.policy import Policy
from teeroute_operator import admit

from ..operator.cases import valid_pool
from .test_tdx import NOW, QUOTE

OFFSETS = {"mrConfigId": 184, "mrOwner": 232, "rtmr0": 328, "rtmr1": 376, "rtmr2": 424}
OFFSETS["rtmr3"] = 472
"""Offsets in the TD report (Intel's TDX DCAP quote layout), which starts at byte 48."""
SEEN = {key: QUOTE[48 + at : 48 + at + 48] for key, at in OFFSETS.items()}
CHECK = {
    "rtmr0": "rtmr0",
    "rtmr1": "rtmr1",
    "rtmr2": "rtmr2",
    "rtmr3": "rtmr3",
    "mrConfigId": "mrconfigid",
    "mrOwner": "mrowner",
}
OTHER = "ab" * 48


def judge(tdx_block: dict[str, Any]) -> Any:
    policy = Policy.from_mapping(
        {"allowedTee": ["tdx"], "allowUncheckedCollateral": True, "tdx": tdx_block}
    )
    return tdx.verify(QUOTE, now=NOW, policy=policy)


def test_pins_on_every_register_pass_when_they_hold_the_quotes_values() -> None:
    verdict = judge({key: [OTHER, value.hex()] for key, value in SEEN.items()})
    assert verdict.ok, verdict.failed
    assert {c.name for c in verdict.checks if c.name.startswith("policy.register.")} == {
        f"policy.register.{name}" for name in CHECK.values()
    }


@pytest.mark.parametrize("key", sorted(SEEN))
def test_a_register_other_than_pinned_is_refused_naming_what_was_seen(key: str) -> None:
    # Before: only MRTD was compared, so a TD with another kernel (RTMR1), command line
    # (RTMR2) or host-set owner (MROWNER) passed a pool pinning them.
    pins = {k: [v.hex()] for k, v in SEEN.items()} | {key: [OTHER]}
    verdict = judge(pins)
    assert [c.name for c in verdict.failed] == [f"policy.register.{CHECK[key]}"]
    assert verdict.failed[0].detail == f"seen {SEEN[key].hex()}"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"rtmr4": [OTHER]}, "unknown tdx policy keys: rtmr4"),
        ({"rtmr0": ["abc"]}, "tdx.rtmr0: expected a list of 48-byte values"),
        ({"mrOwner": OTHER}, "tdx.mrOwner"),
        ({"acceptedTcbStatuses": ["Fine"]}, "unknown status 'Fine'"),
    ],
)
def test_a_malformed_tdx_block_is_refused(block: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Policy.from_mapping({"tdx": block})


def pool(attestation: dict[str, Any]) -> MinerPool:
    raw = valid_pool()
    raw["spec"]["tee"] = {"type": "tdx"}
    raw["spec"]["attestation"] = attestation
    return MinerPool.model_validate(raw)


def test_the_operator_applies_a_pools_tdx_pins_and_fails_closed_by_default() -> None:
    strict = admit.pool_policy(pool({"tdx": {"rtmr1": [OTHER]}}), allow_simulated=False)
    assert strict.register_pins == {"rtmr1": frozenset({OTHER})}
    assert strict.allow_unchecked_collateral is False
    verdict = tdx.verify(QUOTE, now=NOW, policy=strict)
    assert "policy.register.rtmr1" in {c.name for c in verdict.failed}
    assert "tdx.tcb.status" in {c.name for c in verdict.failed}  # no collateral: fails


def test_a_pool_opting_out_of_collateral_says_so_explicitly() -> None:
    spec = {
        "allowUncheckedCollateral": True,
        "tdx": {"rtmr1": [SEEN["rtmr1"].hex()], "acceptedTcbStatuses": ["SWHardeningNeeded"]},
    }
    policy = admit.pool_policy(pool(spec), allow_simulated=False)
    assert policy.allow_unchecked_collateral is True
    assert policy.accepted_tcb_statuses == {"SWHardeningNeeded"}
    verdict = tdx.verify(QUOTE, now=NOW, policy=policy)
    # Only the age is left failing: a pool's maxEvidenceAge needs a challenge time, and a
    # stored quote has none (the operator's own challenges do).
    assert [c.name for c in verdict.failed] == ["freshness.age"]
    assert verdict.status_of("tdx.tcb.status") == "not_checked"
