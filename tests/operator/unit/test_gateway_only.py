"""What the operator gives a pool's pods so that only the gateway is served (issue 14, hole 3):
the gateway keys its agents pin, sealed-only agents when the pool asks, and a NetworkPolicy
letting only the gateway's and the operator's pods reach the agent's port. Pure builders; the
sandbox's kubelet does not enforce NetworkPolicies, so their effect is not tested there."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from teeroute.api import MinerPool
from teeroute.kube import paths
from teeroute_operator import builders
from teeroute_operator.settings import OperatorSettings

from ..cases import ENDPOINTS, valid_pool

KEYS = ",".join(base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2))


def make(**spec: Any) -> MinerPool:
    body = valid_pool("p")
    body["metadata"].update(namespace="ns", uid="uid-1", generation=3)
    body["spec"].update(spec)
    return MinerPool.model_validate(body)


def agent_env(pool: MinerPool, gateway_keys: str = "") -> dict[str, str]:
    deployment = builders.build_deployment(pool, release_key=b"", gateway_keys=gateway_keys)
    (agent,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "agent"
    ]
    return {e["name"]: e.get("value", "") for e in agent["env"]}


def policy(pool: MinerPool) -> dict[str, Any]:
    (found,) = [c for c in builders.children(pool, release_key=b"") if c["kind"] == "NetworkPolicy"]
    return found


def test_agents_pin_the_gateway_keys_the_operator_was_given() -> None:
    assert agent_env(make(), KEYS)["TEEROUTE_AGENT_GATEWAY_KEYS"] == KEYS


def test_without_gateway_keys_agents_pin_none_and_so_answer_no_inference() -> None:
    assert "TEEROUTE_AGENT_GATEWAY_KEYS" not in agent_env(make())
    assert "TEEROUTE_AGENT_ALLOW_ANY_CALLER" not in agent_env(make())


@pytest.mark.parametrize(("sealing", "required"), [("required", True), ("allowed", False)])
def test_a_pool_requiring_sealing_starts_sealed_only_agents(sealing: str, required: bool) -> None:
    env = agent_env(make(sealing=sealing))
    assert ("TEEROUTE_AGENT_REQUIRE_SEALED" in env) == required
    assert env.get("TEEROUTE_AGENT_REQUIRE_SEALED", "true") == "true"


def test_pool_sealing_defaults_to_allowed_and_takes_nothing_else() -> None:
    assert make().spec.sealing == "allowed"
    with pytest.raises(ValidationError):
        make(sealing="sometimes")


def test_the_network_policy_selects_the_pools_pods_and_is_owned_by_the_pool() -> None:
    pool = make()
    found = policy(pool)
    assert found["apiVersion"] == "networking.k8s.io/v1"
    assert found["spec"]["podSelector"] == {"matchLabels": builders.selector(pool)}
    assert found["spec"]["policyTypes"] == ["Ingress"]
    assert found["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert found["metadata"]["namespace"] == "ns"


def test_only_the_gateway_and_the_operator_reach_the_agents_port() -> None:
    (rule,) = policy(make())["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": builders.AGENT_PORT}]
    assert rule["from"] == [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "teeroute-gateway"}},
        },
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "teeroute-operator"}},
        },
    ]
    assert builders.ENGINE_PORT not in {p["port"] for p in rule["ports"]}


def test_external_pools_get_no_network_policy() -> None:
    pool = make(images=None, placement=None, replicas=None, endpoints=ENDPOINTS)
    assert [c["kind"] for c in builders.children(pool, release_key=b"")] == ["Service"]


def test_network_policies_have_an_api_path() -> None:
    assert paths.of(policy(make())) == (
        "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/p"
    )


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_the_operator_refuses_gateway_keys_that_are_not_keys(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEEROUTE_OPERATOR_GATEWAY_KEYS", value)
    with pytest.raises(ValidationError, match="gateway_keys"):
        OperatorSettings()


def test_the_operator_takes_several_gateway_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEEROUTE_OPERATOR_GATEWAY_KEYS", KEYS)
    assert OperatorSettings().gateway_keys == KEYS
