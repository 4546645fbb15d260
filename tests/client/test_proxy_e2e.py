"""`teeroute proxy` end to end, every part a real process on loopback: the engine simulator,
the enclave agent on the simulated TEE (refusing plain requests), the gateway from a config
file with a Route that accepts only client-sealed requests, and the proxy in front, with the
official openai SDK streaming through it, in one client session (wire v2) or one-shot. A
policy pinning a measurement the miner does not have gets the SDK a 403 attestation_refused,
and nothing reaches the gateway's ledger or the enclave. A gateway restarted under a client
forgot its session: the client opens a new one and gets its answer."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from teeroute.client.policy import load_policy
from teeroute.client.session import SealedClient

from ..gateway.miners import agent, chip_dir, verified_lease
from ..gateway.procs import (
    CLI,
    Proc,
    create_key,
    engine,
    free_port,
    gateway,
    started,
    with_gateway_key,
)

pytestmark = pytest.mark.timeout(240)

MODEL = "sim-model"
PROMPT = "explain sealed inference to a sceptic"
KEY_ENV = "TEEROUTE_PROXY_TEST_KEY"
PACE = 40  # tokens per second: a 24-token answer streams for about 0.6 s


def gateway_config(path: Path, lease: dict[str, Any]) -> Path:
    docs = [
        {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "GatewayConfig",
            "spec": {"ledger": "sqlite:///ledger.db"},
        },
        {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "MinerPool",
            "metadata": {"name": "honest"},
            "spec": {
                "models": [{"name": MODEL, "contextLength": 8192}],
                "tee": {"type": "simulated"},
                "pricing": {"inputPerMillion": "1", "outputPerMillion": "2"},
                "endpoints": [{"name": "m0", "url": lease["url"]}],
            },
            "status": {"endpoints": [lease]},
        },
        {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "Route",
            "metadata": {"name": "sim"},
            "spec": {
                "model": MODEL,
                "backends": [{"pool": "honest"}],
                "constraints": {"allowedTee": ["simulated"]},
                "sealing": "required",  # the gateway never sees a prompt
            },
        },
    ]
    path.write_text(yaml.safe_dump_all(docs))
    return path


@contextmanager
def proxy(gw: Proc, policy: Path, key: str, log: Path, *options: str) -> Iterator[Proc]:
    port = free_port()
    argv = [*CLI, "proxy", "--gateway", f"{gw.url}/v1", "--policy", str(policy)]
    argv += ["--port", str(port), "--api-key-env", KEY_ENV, "--verbose", *options]
    with started(argv, port, log, "/healthz", {KEY_ENV: key}) as local:
        yield local


def write_policy(path: Path, chips: Path, measurement: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "allowedTee": ["simulated"],
                "allowedMeasurements": [measurement],
                "maxEvidenceAge": "1m",
                "trust": {"simulatedRoot": str(chips / "root.crt")},
            }
        )
    )
    return path


class Setup:
    def __init__(self, tmp: Path, gw: Proc, key: str, config: Path, **parts: Any) -> None:
        self.tmp, self.gw, self.key, self.config = tmp, gw, key, config
        self.engine: Proc = parts["engine"]
        self.agent: Proc = parts["agent"]
        self.chips: Path = parts["chips"]
        self.lease: dict[str, Any] = parts["lease"]

    def settled_requests(self) -> int:
        done = subprocess.run(
            [*CLI, "gateway", "settlement", "--config", str(self.config)],
            capture_output=True,
            text=True,
            check=True,
        )
        return sum(row["requests"] for row in json.loads(done.stdout))

    def enclave_requests(self) -> int:
        return self.agent.log.read_text().count("POST /v1/chat/completions")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("proxy-e2e")
    chips = chip_dir(tmp_path_factory.mktemp("chips"))
    with (
        engine(tmp, "e0", "--tokens-per-s", str(PACE)) as eng,
        agent(chips, eng.url, tmp / "agent.log", TEEROUTE_AGENT_REQUIRE_SEALED="true") as miner,
    ):
        lease = verified_lease("m0", miner.url, chips)
        config = gateway_config(tmp / "gateway.yaml", lease)
        key = create_key(config, "10")
        with gateway(config) as gw:
            yield Setup(tmp, gw, key, config, engine=eng, agent=miner, chips=chips, lease=lease)


def chat(stream: bool) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 24,
        "seed": 7,
        "stream": stream,
    }


def sdk(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


@pytest.mark.parametrize("options", [(), ("--one-shot",)], ids=["session", "one-shot"])
def test_the_openai_sdk_streams_sealed_through_the_proxy(
    setup: Setup, options: tuple[str, ...]
) -> None:
    policy = write_policy(setup.tmp / "policy.json", setup.chips, setup.lease["measurement"])
    expected = sdk(setup.engine.url).chat.completions.create(**chat(False))
    log_file = setup.tmp / f"proxy{'-'.join(options)}.log"
    with proxy(setup.gw, policy, setup.key, log_file, *options) as local:
        client = sdk(local.url)
        with client.chat.completions.with_streaming_response.create(**chat(True)) as response:
            request_id = response.headers["x-request-id"]
            assert response.headers["x-teeroute-hpke-key"] == setup.lease["hpkeKeySha256"]
            arrivals = [(time.monotonic(), c) for c in response.parse()]
        chunks = [c for _, c in arrivals]
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text == expected.choices[0].message.content
        # relayed as the frames open, not buffered until the receipt: the first tokens came
        # long before the last
        assert arrivals[-1][0] - arrivals[0][0] > 10 / PACE
        assert all(c.choices for c in chunks)  # no usage chunk: it was not asked for
        whole = client.chat.completions.create(**chat(False))
        assert whole.choices[0].message.content == expected.choices[0].message.content
        assert [m.id for m in client.models.list()] == [MODEL]
    log = local.log.read_text()
    assert log.count("receipt ok") == 2
    sessions = {x.split("session=")[1].split()[0] for x in log.splitlines() if "session=" in x}
    assert len(sessions) == 1  # one session for both requests, or one-shots
    assert ("one-shot" in sessions) == bool(options)
    assert f"{request_id} pool=" in log
    assert "tee=simulated" in log
    assert f"hpke={setup.lease['hpkeKeySha256'][:16]}" in log
    assert PROMPT not in log and text not in log
    line = next(x for x in log.splitlines() if x.startswith(f"teeroute proxy: {request_id}"))
    tokens = line.split("tokens=")[1].split()[0]
    record = httpx.get(
        f"{setup.gw.url}/v1/generation",
        params={"id": request_id},
        headers={"Authorization": f"Bearer {setup.key}"},
        timeout=10,
    ).json()["data"]
    assert record["receipt_status"] == "valid"
    assert tokens == f"{record['input_tokens']}+{record['output_tokens']}"


def test_a_pinned_measurement_the_miner_lacks_refuses_before_sending(setup: Setup) -> None:
    policy = write_policy(setup.tmp / "pinned.json", setup.chips, "cd" * 48)
    settled, served = setup.settled_requests(), setup.enclave_requests()
    with proxy(setup.gw, policy, setup.key, setup.tmp / "proxy-pinned.log") as local:
        for stream in (True, False):
            with pytest.raises(openai.PermissionDeniedError) as refused:
                sdk(local.url).chat.completions.create(**chat(stream))
            assert refused.value.status_code == 403
            assert refused.value.code == "attestation_refused"
            assert "policy.measurement" in refused.value.message
    assert setup.settled_requests() == settled
    assert setup.enclave_requests() == served
    assert "refused sim-model" in local.log.read_text()


def test_the_attest_command_against_the_real_gateway(setup: Setup) -> None:
    policy = write_policy(setup.tmp / "attest.json", setup.chips, setup.lease["measurement"])
    done = subprocess.run(
        [*CLI, "attest", "--gateway", setup.gw.url, "--model", MODEL, "--policy", str(policy)],
        capture_output=True,
        text=True,
        env={**os.environ, "TEEROUTE_API_KEY": setup.key},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "1 verified, 0 refused" in done.stdout
    assert setup.lease["hpkeKeySha256"] in done.stdout
    assert setup.lease["measurement"] in done.stdout
    default = subprocess.run(
        [*CLI, "attest", "--gateway", setup.gw.url, "--model", MODEL, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "TEEROUTE_API_KEY": setup.key},
        check=False,
    )
    assert default.returncode == 5  # no policy file: hardware TEEs only
    assert json.loads(default.stdout)["refused"][0]["failed"] == ["policy.tee_allowed"]


def test_a_client_session_a_restarted_gateway_forgot_is_opened_again(
    setup: Setup, tmp_path: Path
) -> None:
    """The gateway routes a session's requests by what it learned when the session opened;
    after a restart it knows nothing (409 session_unknown) and the client opens a new
    session, once, and gets its answer."""
    config = with_gateway_key(gateway_config(tmp_path / "gateway.yaml", setup.lease))
    key = create_key(config, "10")
    port = free_port()
    argv = [*CLI, "gateway", "serve", "--config", str(config), "--port", str(port)]
    policy = load_policy(
        write_policy(tmp_path / "policy.json", setup.chips, setup.lease["measurement"])
    )
    client = SealedClient(f"http://127.0.0.1:{port}", key, policy)
    request = json.dumps(chat(True)).encode()
    answers = []
    for run in ("before", "after"):
        with started(argv, port, tmp_path / f"gateway-{run}.log", "/readyz"):
            with client.request("/v1/chat/completions", request) as answer:
                assert b"[DONE]" in answer.read()
            assert answer.receipt is not None and answer.receipt.complete
            answers.append(answer)
    client.close()
    assert answers[0].session_id != answers[1].session_id
    assert client.sessions.opened == 2  # the first, then one again after the 409
