"""Clocks that disagree, through a real gateway and real agents (wire v2): an enclave whose
clock is off refuses the gateway's session HELLO (its `created_at` is the gateway's clock,
session.time), the gateway takes that as the endpoint's failure and serves from another; a
client whose own clock is off gets the enclave's typed refusal of its HELLO.

The clock is moved by libfaketime (LD_PRELOAD) in the agent process only, the way a host
could set its confidential VM's clock."""

from __future__ import annotations

import base64
import copy
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from teeroute.sealing.session import initiate

from . import sealed_v2
from .miners import agent, chip_dir, verified_lease
from .procs import Proc, create_key, engine, gateway, write_config

pytestmark = pytest.mark.timeout(240)

BEHIND_S = 400  # beyond the agent's default window of 300 s
Setup = tuple[Proc, str, dict[str, Any]]


def libfaketime() -> str:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is not installed: run scripts/setup (Debian package faketime)")
    return str(found[0])


def _config(path: Path, behind: dict[str, Any], true: dict[str, Any]) -> Path:
    """Pool `mixed` (both enclaves) behind Route sim-mixed, pool `behind` (the slow one)
    behind Route sim-behind; both Routes let the gateway seal."""
    pools = {
        "mixed": [(x["name"], x["url"]) for x in (behind, true)],
        "behind": [(behind["name"], behind["url"])],
    }
    leases = {"mixed": [behind, true], "behind": [behind]}
    sealed = {"sealing": "gateway"}
    write_config(
        path,
        pools,
        leases=leases,
        route={"model": "sim-mixed", "backends": [{"pool": "mixed"}], **sealed},
    )
    docs = list(yaml.safe_load_all(path.read_text()))
    other = copy.deepcopy(docs[-1])
    other["metadata"]["name"] = "behind"
    other["spec"] |= {"model": "sim-behind", "backends": [{"pool": "behind"}]}
    path.write_text(yaml.safe_dump_all([*docs, other]))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("clocks")
    chips = chip_dir(tmp_path_factory.mktemp("chips"))
    skewed = {
        "LD_PRELOAD": libfaketime(),
        "FAKETIME": f"-{BEHIND_S}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    with (
        engine(tmp, "e0") as eng,
        agent(chips, eng.url, tmp / "behind.log", **skewed) as slow,
        agent(chips, eng.url, tmp / "true.log") as good,
    ):
        behind = verified_lease("behind", slow.url, chips)
        true = verified_lease("true", good.url, chips)
        config = _config(tmp / "gateway.yaml", behind, true)
        key = create_key(config, "10")
        with gateway(config) as gw:
            yield gw, key, {"behind": behind, "true": true}


def _chat(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "what time is it"}],
        "max_tokens": 8,
    }


def _attempts(gw: Proc, pool: str, outcome: str) -> float:
    prefix = (
        f'teeroute_gateway_upstream_attempts_total{{outcome="{outcome}",pool="default/{pool}"}}'
    )
    for line in httpx.get(f"{gw.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_an_enclave_behind_the_gateways_clock_fails_over_to_one_in_time(setup: Setup) -> None:
    gw, key, _ = setup
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    for _ in range(6):
        answer = client.chat.completions.create(**_chat("sim-mixed"))
        assert answer.choices[0].message.content
    assert _attempts(gw, "mixed", "ok") == 6
    # the first request to reach the slow enclave failed there (and was served by the other);
    # the health book may eject it after that, so there is at least one such attempt
    assert _attempts(gw, "mixed", "sealed") >= 1


def test_with_only_that_enclave_the_client_gets_a_typed_upstream_error(setup: Setup) -> None:
    gw, key, _ = setup
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(**_chat("sim-behind"))
    assert failed.value.status_code == 502, failed.value.body
    error = failed.value.body
    assert isinstance(error, dict)
    assert error["code"] == "upstream_sealed", error
    assert "session.time" in error["message"], error


def test_a_client_whose_clock_is_off_gets_the_enclaves_refusal(setup: Setup) -> None:
    """The gateway's session with the enclave in time is fine; the client's own HELLO, made
    by a clock 400 s behind, is the enclave's to refuse, and the refusal comes back as is."""
    gw, key, parts = setup
    true = parts["true"]
    params = dataclasses.replace(
        sealed_v2.client_params(true), created_at=int(time.time()) - BEHIND_S
    )
    hello, _ = initiate(base64.b64decode(true["hpkePublicKey"]), params)
    answer = sealed_v2.post_hello(gw.url, key, hello, true["hpkeKeySha256"])
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "session_invalid", error
    assert error["message"].startswith("session.time"), error


def test_a_client_sealing_to_the_enclave_behind_gets_a_typed_upstream_error(setup: Setup) -> None:
    gw, key, parts = setup
    behind = parts["behind"]
    hello, _ = sealed_v2.hello(behind)
    answer = sealed_v2.post_hello(gw.url, key, hello, behind["hpkeKeySha256"])
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["code"] == "upstream_sealed" and "session.time" in error["message"], error
