"""The gateway keys an enclave pins are part of what it attests (issue 14, hole 3 follow-up),
against real processes.

A namespace editor can patch the env of a pool's Deployment (the `edit` role can), so the
pods it starts pin the editor's gateway key instead of the gateway's: they would verify, be
admitted, get the pool's secrets, and answer the editor directly (billing bypassed, a relay's
released upstream key spent). The agent binds its pinned keys into report_data and the
operator's challenge (`challenge.challenge`, the sweeper's) requires exactly the keys it was
configured with (`Judge.gateway_keys`): such an enclave is Rejected by name (`gateway.keys`).
The last test runs the operator itself (sandbox): its configured keys reach the sweeper.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute import admission
from teeroute_operator.challenge import Judge
from teeroute_operator.lease import Rejected, Verified
from teeroute_operator.settings import OperatorSettings
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import wait_for
from tests import gateway_key

from ..enclave.sealed_client import agent_process
from ..enclave.test_agent import chip_dir  # noqa: F401 - a fixture, used by name
from .conftest import OperatorProcess
from .test_attestation import (
    API,
    agent_outside,
    attested_pool,
    status_of,
    sweeping_operator,  # noqa: F401 - a fixture, used by name
)
from .test_cross_pool import challenged
from .test_cross_pool import judge as pool_judge

POOL = "miners/llama"
ATTACKER = ed25519.Ed25519PrivateKey.generate()
ATTACKER_PUBLIC = ATTACKER.public_key().public_bytes_raw()
ROTATED = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()


def b64(*keys: bytes) -> str:
    return ",".join(base64.b64encode(k).decode() for k in keys)


def judge(chips: Path, expected: frozenset[bytes] | None) -> Judge:
    """What the sweeper judges an endpoint of POOL by, for an operator configured with the
    gateway keys `expected` (TEEROUTE_OPERATOR_GATEWAY_KEYS)."""
    return replace(pool_judge(chips, POOL), gateway_keys=expected)


def short(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def test_an_enclave_pinning_the_attackers_gateway_key_is_rejected_by_name(
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    """The attack: pods whose env was patched to pin the editor's key. Without the binding
    they were Verified, and the editor's own signature got them to answer."""
    pinned = {"pool": POOL, "gateway_keys": b64(ATTACKER_PUBLIC)}
    with agent_process(chip_dir, "", tmp_path / "agent.log", **pinned) as agent:
        outcome = challenged(agent, judge(chip_dir, frozenset({gateway_key.PUBLIC})))
        # the editor can indeed speak to it: what admission must not allow
        auth = gateway_key.Signed(gateway_key.hpke_key_id(agent), ATTACKER)
        direct = httpx.get(f"{agent}/v1/models", auth=auth, timeout=10)
    assert direct.status_code not in (401, 403)  # the agent does take the editor's key
    assert isinstance(outcome, Rejected), outcome
    assert "gateway.keys failed" in outcome.reason
    assert f"pins {short(ATTACKER_PUBLIC)}" in outcome.reason
    assert f"lacks {short(gateway_key.PUBLIC)}" in outcome.reason
    assert base64.b64encode(ATTACKER_PUBLIC).decode() not in outcome.reason  # no key dumped


@pytest.mark.parametrize(
    ("pinned", "expected"),
    [
        pytest.param((gateway_key.PUBLIC,), {gateway_key.PUBLIC}, id="the-gateway-key"),
        pytest.param((ROTATED, gateway_key.PUBLIC), {gateway_key.PUBLIC, ROTATED}, id="rotation"),
        pytest.param((), set(), id="none-on-both-sides"),
    ],
)
def test_an_enclave_pinning_exactly_the_operators_gateway_keys_verifies(
    pinned: tuple[bytes, ...],
    expected: set[bytes],
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    settings = {"pool": POOL, "gateway_keys": b64(*pinned)}
    with agent_process(chip_dir, "", tmp_path / "agent.log", **settings) as agent:
        outcome = challenged(agent, judge(chip_dir, frozenset(expected)))
    assert isinstance(outcome, Verified), outcome


@pytest.mark.parametrize(
    ("pinned", "expected", "detail"),
    [
        pytest.param(
            (gateway_key.PUBLIC, ATTACKER_PUBLIC),
            {gateway_key.PUBLIC},
            f"pins {short(ATTACKER_PUBLIC)}",
            id="one-key-added",
        ),
        pytest.param(
            (gateway_key.PUBLIC,),
            {gateway_key.PUBLIC, ROTATED},
            f"lacks {short(ROTATED)}",
            id="one-key-missing",
        ),
        pytest.param(
            (gateway_key.PUBLIC,),
            set(),
            f"pins {short(gateway_key.PUBLIC)}",
            id="operator-configured-none",
        ),
        pytest.param((), {gateway_key.PUBLIC}, f"lacks {short(gateway_key.PUBLIC)}", id="none"),
    ],
)
def test_any_other_set_of_gateway_keys_is_rejected(
    pinned: tuple[bytes, ...],
    expected: set[bytes],
    detail: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    settings = {"pool": POOL, "gateway_keys": b64(*pinned)}
    with agent_process(chip_dir, "", tmp_path / "agent.log", **settings) as agent:
        outcome = challenged(agent, judge(chip_dir, frozenset(expected)))
    assert isinstance(outcome, Rejected), outcome
    assert "gateway.keys failed" in outcome.reason and detail in outcome.reason


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("", frozenset()),
        (b64(gateway_key.PUBLIC), frozenset({gateway_key.PUBLIC})),
        (f"{b64(ROTATED)}, {b64(gateway_key.PUBLIC)},", frozenset({gateway_key.PUBLIC, ROTATED})),
    ],
    ids=["unset", "one", "rotation"],
)
def test_the_sweeper_expects_the_set_the_operator_was_configured_with(
    configured: str, expected: frozenset[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEEROUTE_OPERATOR_GATEWAY_KEYS", configured)
    assert OperatorSettings().gateway_key_set() == expected


@pytest.mark.sandbox
def test_the_operator_admits_only_remote_enclaves_pinning_its_gateway_keys(
    sandbox: Sandbox,
    kube: KubeRest,
    namespace: str,
    sweeping_operator: OperatorProcess,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    """The real operator (configured with the tests' gateway key, conftest) sweeping a pool
    of two remote enclaves: the one pinning the attacker's key is refused by name."""
    serving = {"TEEROUTE_AGENT_POOL": f"{namespace}/remote"}
    attacker = {**serving, "TEEROUTE_AGENT_GATEWAY_KEYS": b64(ATTACKER_PUBLIC)}
    (tmp_path / "honest").mkdir()
    (tmp_path / "mallory").mkdir()
    with (
        agent_outside(sandbox, tmp_path / "honest", **serving) as honest,
        agent_outside(sandbox, tmp_path / "mallory", **attacker) as mallory,
    ):
        pool = attested_pool("remote")
        for key in ("replicas", "images", "placement", "resources"):
            del pool["spec"][key]
        pool["spec"]["endpoints"] = [
            {"name": "honest", "url": honest},
            {"name": "mallory", "url": mallory},
        ]
        kube.post(f"{API}/{namespace}/minerpools", pool)

        def refused() -> str:
            found = status_of(kube, namespace, "remote").get("endpoints") or []
            return next((e.get("failure") or "" for e in found if e["name"] == "mallory"), "")

        def admitted() -> set[str]:
            status, now = status_of(kube, namespace, "remote"), dt.datetime.now(dt.UTC)
            return {e.name for e in admission.admitted_external(status, now)}

        wait_for(
            lambda: "gateway.keys" in refused() and admitted() == {"honest"},
            timeout_s=30,
            what="the honest enclave admitted, mallory's refused",
        )
    assert f"pins {short(ATTACKER_PUBLIC)}" in refused()
