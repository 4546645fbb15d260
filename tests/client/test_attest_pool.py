"""The pool an enclave's evidence binds, as the client judges it: the gateway must list the
enclave under that pool (`entry.pool`), and a policy with `allowedPools` seals only to enclaves
bound to one of them (`policy.pool`), e.g. the relay pool whose upstream account the user
accepts."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import pytest

from teeroute.client.attest import RefusedEnclave, VerifiedEnclave, judge
from teeroute.client.errors import PolicyError
from teeroute.client.policy import ClientPolicy

from .fakes import Chip, FakeEnclave, make_chip, simulated_policy


@pytest.fixture(scope="module")
def chip() -> Chip:
    return make_chip()


def judged(
    enclave: FakeEnclave, policy: ClientPolicy, **listed: str
) -> VerifiedEnclave | RefusedEnclave:
    nonce = secrets.token_bytes(32)
    now = dt.datetime.now(dt.UTC)
    entry = {**enclave.entry(nonce), **listed}
    return judge(entry, nonce=nonce, issued_at=now, now=now, policy=policy)


def status(outcome: VerifiedEnclave | RefusedEnclave, check: str) -> str:
    return {c.name: c.status for c in outcome.checks}[check]


@pytest.mark.parametrize(
    ("listed", "bound", "verdict"),
    [
        ({"pool": "ns/pool-a"}, "ns/pool-a", "passed"),
        ({"namespace": "ns", "pool": "pool-a"}, "ns/pool-a", "passed"),  # the gateway's form
        ({"namespace": "ns", "pool": "pool-b"}, "ns/pool-a", "failed"),
        ({"namespace": "other", "pool": "pool-a"}, "ns/pool-a", "failed"),
        ({"namespace": "ns", "pool": "pool-a"}, None, "not_checked"),
    ],
)
def test_the_listed_pool_must_be_the_attested_one(
    listed: dict[str, str], bound: str | None, verdict: str, chip: Chip, tmp_path: Path
) -> None:
    outcome = judged(
        FakeEnclave(chip, bound_pool=bound), simulated_policy(chip, tmp_path), **listed
    )
    assert status(outcome, "entry.pool") == verdict
    if verdict == "failed":
        assert isinstance(outcome, RefusedEnclave) and outcome.failed == ("entry.pool",)
    else:
        assert isinstance(outcome, VerifiedEnclave)


@pytest.mark.parametrize(
    ("bound", "verified"),
    [("ns/pool-a", True), ("ns/pool-b", False), (None, False)],
)
def test_a_client_pinning_pools_seals_only_to_their_enclaves(
    bound: str | None, verified: bool, chip: Chip, tmp_path: Path
) -> None:
    policy = simulated_policy(chip, tmp_path, allowedPools=["ns/pool-a", "team/relay"])
    listed = {"pool": bound or "ns/pool-b"}
    outcome = judged(FakeEnclave(chip, bound_pool=bound), policy, **listed)
    assert isinstance(outcome, VerifiedEnclave) is verified
    if not verified:
        assert isinstance(outcome, RefusedEnclave) and outcome.failed == ("policy.pool",)


@pytest.mark.parametrize("value", [[], "ns/pool-a", ["NS/pool"], ["pool-a"], [1]])
def test_a_malformed_pool_pin_is_refused_by_name(value: object, chip: Chip, tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as refused:
        simulated_policy(chip, tmp_path, allowedPools=value)
    assert "allowedPools" in str(refused.value)
