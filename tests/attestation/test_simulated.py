"""The simulated TEE: genuine cryptography, trusted only where a policy allows it."""

from __future__ import annotations

import contextlib
import datetime as dt
import random

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from teeroute.attestation import simulated
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.policy import Challenge, Policy, bind
from teeroute.attestation.verdict import Verdict

NOW = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)
ROOT, ROOT_KEY = simulated.new_root(NOW)
CHIP, CHIP_KEY = simulated.issue_chip(ROOT, ROOT_KEY, "sandbox-worker", NOW)
MEASUREMENT = bytes(range(48))
CHALLENGE = Challenge(b"\x07" * 32, NOW, b"h" * 32, b"s" * 32)
ALLOW = Policy(
    allowed_tee=frozenset({"simulated"}),
    allowed_measurements=frozenset({MEASUREMENT.hex()}),
    max_age=dt.timedelta(minutes=5),
)


def report(**overrides: object) -> bytes:
    fields: dict[str, object] = {"measurement": MEASUREMENT, "report_data": CHALLENGE.report_data}
    fields.update(overrides)
    return simulated.make_report(CHIP_KEY, **fields)  # type: ignore[arg-type]


def verify(
    data: bytes,
    policy: Policy | None = ALLOW,
    chip: bytes | None = None,
    root: bytes | None = None,
    now: dt.datetime = NOW,
) -> Verdict:
    return simulated.verify(
        data,
        chip or CHIP.public_bytes(Encoding.PEM),
        root or ROOT.public_bytes(Encoding.PEM),
        now=now,
        policy=policy,
        challenge=CHALLENGE,
    )


def test_a_good_report_under_a_policy_that_allows_simulated_passes() -> None:
    verdict = verify(report())
    assert verdict.ok, verdict.failed
    assert verdict.status_of("binding.report_data") == "passed"


def test_without_an_explicit_allowance_simulated_evidence_is_refused() -> None:
    for policy in (None, Policy(), Policy(allowed_tee=frozenset({"sev-snp", "tdx"}))):
        verdict = verify(report(), policy=policy)
        assert [c.name for c in verdict.failed] == ["policy.tee_allowed"]


@pytest.mark.parametrize("offset", range(simulated.SIGNED_SIZE))
def test_any_single_byte_change_is_rejected(offset: int) -> None:
    corrupt = bytearray(report())
    corrupt[offset] ^= 0x01
    try:
        verdict = verify(bytes(corrupt))
    except EvidenceInvalid:
        return
    assert verdict.status_of("sim.signature") == "failed"


def test_another_roots_chip_is_rejected() -> None:
    other_root, other_key = simulated.new_root(NOW)
    other_chip, _ = simulated.issue_chip(other_root, other_key, "x", NOW)
    verdict = verify(report(), chip=other_chip.public_bytes(Encoding.PEM))
    assert verdict.status_of("sim.chain.chip_signed_by_root") == "failed"
    assert verdict.status_of("sim.chip_id_matches") == "failed"  # and it is not that chip
    assert verdict.status_of("sim.signature") == "failed"


@pytest.mark.parametrize(
    ("data", "failing"),
    [
        (lambda: report(measurement=b"\xff" * 48), "policy.measurement"),
        (lambda: report(debug=True), "policy.debug_forbidden"),
        (
            lambda: report(report_data=bind(b"other nonce", b"h" * 32, b"s" * 32)),
            "binding.report_data",
        ),
        (
            lambda: report(report_data=bind(CHALLENGE.nonce, b"other key", b"s" * 32)),
            "binding.report_data",
        ),
    ],
)
def test_policy_violations_are_named(data: object, failing: str) -> None:
    verdict = verify(data())  # type: ignore[operator]
    assert [c.name for c in verdict.failed] == [failing]


def test_expired_chain_and_stale_challenge() -> None:
    later = NOW + dt.timedelta(days=365 * 6)
    failed = {c.name for c in verify(report(), now=later).failed}
    assert failed == {"sim.chain.validity", "freshness.age"}


def test_parser_refuses_what_is_not_a_simulated_report() -> None:
    good = report()
    for bad, message in (
        (good[:-1], "319 bytes"),
        (b"X" + good[1:], "magic"),
        (good[:8] + (2).to_bytes(4, "little") + good[12:], "version 2"),
        (good[:0xD0] + b"\1" + good[0xD1:], "reserved"),
    ):
        with pytest.raises(EvidenceInvalid, match=message):
            simulated.parse_report(bad)


def test_random_bytes_only_raise_typed_errors() -> None:
    rng = random.Random(11)
    for _ in range(300):
        sample = bytearray(report())
        for _ in range(rng.randint(1, 6)):
            sample[rng.randrange(len(sample))] = rng.randrange(256)
        with contextlib.suppress(EvidenceInvalid):
            verify(bytes(sample))
