"""The pool identity the operator gives the agents it runs (TEEROUTE_AGENT_POOL): what their
evidence binds and the only pool whose secret releases they accept (issue 14, hole 2)."""

from __future__ import annotations

import re

from teeroute.attestation.evidence import POOL_PATTERN
from teeroute_operator import builders

from .test_builders import containers, deployment, env_of, make


def test_every_agent_serves_its_own_namespace_and_pool() -> None:
    relay = make(images={"agent": "a:1"}, relay={"url": "https://api.provider.example/v1"})
    for pool in (make(), relay):
        agent = containers(deployment(pool))["agent"]
        assert env_of(agent)[builders.POOL_ENV] == "ns/p"
        assert re.fullmatch(POOL_PATTERN, env_of(agent)[builders.POOL_ENV])
    assert builders.POOL_ENV not in env_of(containers(deployment(make()))["engine"])
