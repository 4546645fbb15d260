"""The confused deputy of issue 14, hole 2, against real processes: a pool whose external
endpoint relays to another pool's enclave.

The victim pool `victims/relay` runs a relay enclave (a real `python -m teeroute_enclave`,
simulated TEE) in front of a closed-model provider (the engine simulator demanding the
victim's API key). The attacker owns another pool, `mallory/relay`, and lists the victim's
agent as its endpoint. The operator's own code paths speak to the agent over HTTP: the
challenge (`challenge.challenge`, the sweeper's), the release decision (`release.decide`) and
the delivery (`delivery.deliver`). The attacker's pool must be rejected by name
(`pool.binding`), and even a release the operator did send for the attacker's pool must not
reach the victim's engine: the agent opens releases for its own pool only."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.attestation.evidence import Trust
from teeroute.attestation.policy import Policy
from teeroute.attestation.providers import code_measurement
from teeroute.sealing import secrets
from teeroute_enclave.__main__ import PACKAGE as AGENT
from teeroute_operator import delivery, release
from teeroute_operator.challenge import Judge, Target, challenge
from teeroute_operator.lease import Outcome, Rejected, Verified
from teeroute_operator.metrics import Metrics
from teeroute_operator.nonces import NonceBook
from tests import gateway_key

from ..enclave.sealed_client import agent_process
from ..enclave.test_agent import chip_dir  # noqa: F401 - a fixture, used by name
from ..enclave.test_agent_proxy import MODEL, engine_process

VICTIM = "victims/relay"
ATTACKER = "mallory/relay"
VICTIM_KEY = "sk-victim-provider-4e1b9c27d05a"
ATTACKER_KEY = "sk-mallory-account-8d2f61a0c3e7"
OPERATOR = secrets.Signer.from_private(ed25519.Ed25519PrivateKey.generate())


def judge(chips: Path, pool: str) -> Judge:
    """What the sweeper judges an endpoint of `pool` by (a simulated-TEE pool pinning the
    agent's own code measurement, as the sandbox's pools do)."""
    return Judge(
        policy=Policy(
            allowed_tee=frozenset({"simulated"}),
            allowed_measurements=frozenset({code_measurement(AGENT).hex()}),
            max_age=dt.timedelta(minutes=1),
        ),
        trust=Trust(simulated_root_pem=(chips / "root.crt").read_bytes()),
        require_gpu=False,
        pool=pool,
    )


def challenged(url: str, j: Judge) -> Outcome:
    async def go() -> Outcome:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            book = NonceBook(dt.timedelta(seconds=10))
            return await challenge(
                client, Target(url, url), j, book, Metrics(), lambda: dt.datetime.now(dt.UTC)
            )

    return asyncio.run(go())


def delivered(url: str, outcome: Verified, pool: str, values: dict[str, str]) -> str | None:
    """What the sweeper does for a verified endpoint of `pool` with secrets `values`."""
    loaded = release.Loaded((release.SecretVersion(secrets.ENGINE_API_KEY, "s", "k", "1"),), values)
    decision = release.decide(
        outcome.hpke_key, loaded, set(), signer=OPERATOR, pinned=outcome.pinned_release_key
    )
    assert isinstance(decision, release.Send)

    async def go() -> str | None:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            return await delivery.deliver(
                client, url, outcome.hpke_public_key, pool, values, OPERATOR, time.time_ns()
            )

    return asyncio.run(go())


def answered(agent: str) -> int:
    """The status of a completion the gateway sends through the agent to the provider."""
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    auth = gateway_key.signed_for(agent)
    return httpx.post(f"{agent}/v1/completions", json=body, auth=auth, timeout=30).status_code


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[str]:
    """The victim's closed-model provider: it serves requests bearing VICTIM_KEY only."""
    flags = ("--api-key-env", "SIM_ENGINE_KEY")
    env = {"SIM_ENGINE_KEY": VICTIM_KEY}
    with engine_process(tmp_path / "provider.log", *flags, env=env) as (url, _):
        yield url


@pytest.fixture
def victim(
    provider: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> Iterator[str]:
    """The victim's relay enclave, serving VICTIM, holding its provider key (released by the
    operator for VICTIM after its evidence verified, as the sweeper does)."""
    pinned = base64.b64encode(OPERATOR.public).decode()
    log = tmp_path / "victim.log"
    with agent_process(chip_dir, provider, log, release_key=pinned, pool=VICTIM) as agent:
        outcome = challenged(agent, judge(chip_dir, VICTIM))
        assert isinstance(outcome, Verified), outcome
        assert delivered(agent, outcome, VICTIM, {secrets.ENGINE_API_KEY: VICTIM_KEY}) is None
        assert answered(agent) == 200
        yield agent


def test_a_pool_listing_another_pools_enclave_is_rejected_by_name(
    victim: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
) -> None:
    outcome = challenged(victim, judge(chip_dir, ATTACKER))
    assert isinstance(outcome, Rejected)
    assert "pool.binding failed (the enclave serves victims/relay, not mallory/relay)" in (
        outcome.reason
    )


def test_another_pools_release_never_reaches_the_enclave(
    victim: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
) -> None:
    """Defence in depth: even had the operator verified the victim's evidence for the
    attacker's pool and released the attacker's key into it, the agent refuses it, and the
    victim's provider still sees the victim's key only."""
    outcome = challenged(victim, judge(chip_dir, VICTIM))
    assert isinstance(outcome, Verified)
    why = delivered(victim, outcome, ATTACKER, {secrets.ENGINE_API_KEY: ATTACKER_KEY})
    assert why is not None and "HTTP 403 release_refused" in why
    assert answered(victim) == 200  # the attacker's key would have made the provider say 401


def test_an_enclave_serving_no_pool_is_admitted_to_none_and_takes_no_release(
    provider: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    pinned = base64.b64encode(OPERATOR.public).decode()
    with agent_process(chip_dir, provider, tmp_path / "a.log", release_key=pinned) as agent:
        rejected = challenged(agent, judge(chip_dir, VICTIM))
        outcome = challenged(agent, replace(judge(chip_dir, VICTIM), pool=None))
        assert isinstance(outcome, Verified)  # evidence judged outside any pool
        why = delivered(agent, outcome, VICTIM, {secrets.ENGINE_API_KEY: VICTIM_KEY})
        status = answered(agent)
    assert isinstance(rejected, Rejected)
    assert "pool.binding failed (the enclave serves no pool (expected victims/relay))" in (
        rejected.reason
    )
    assert why is not None and "HTTP 403 secret_release_disabled" in why
    assert status == 401  # the provider never got a key
