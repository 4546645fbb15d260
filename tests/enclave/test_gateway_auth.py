"""The agent answers inference only to the gateway (issue 14, hole 3): a real enclave agent
(simulated TEE) before a real engine simulator, a real gateway holding the gateway key the
agent pins, and callers that are not the gateway: any pod reaching the agent's port, a client
routing around the gateway's billing, someone replaying or bending a header they captured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.sealing import envelope, gateway_auth
from teeroute.sealing.session import initiate
from tests import gateway_key

from ..gateway.miners import NODE, agent, chip_dir, verified_lease
from ..gateway.procs import Proc, create_key, engine, free_port, gateway, write_config
from .sealed_client import V2, Sealer, enclave_keys, params

pytestmark = pytest.mark.timeout(240)

CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"
CHAT_BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
TEXT_BODY = {"model": "sim-model", "prompt": "hi", "max_tokens": 4}
Setup = tuple[Proc, Proc, str, Path]
"""The agent, the gateway, a client key of the gateway, the simulated chips."""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("gateway-auth")
    chips = chip_dir(tmp_path_factory.mktemp("chips"))
    with engine(tmp, "e0") as eng, agent(chips, eng.url, tmp / "agent.log") as miner:
        lease = verified_lease("m0", miner.url, chips)
        config = write_config(
            tmp / "gateway.yaml", {"pool": [("m0", miner.url)]}, leases={"pool": [lease]}
        )
        key = create_key(config, "10")
        with gateway(config) as gw:
            yield miner, gw, key, chips


def post(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return httpx.post(
        url + path,
        content=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        timeout=30,
    )


def refusal(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["type"]


@pytest.mark.parametrize(
    ("path", "body"), [(CHAT, CHAT_BODY), (TEXT, TEXT_BODY)], ids=["chat", "text"]
)
def test_a_direct_call_without_the_gateways_authorization_is_refused(
    setup: Setup, path: str, body: dict[str, Any]
) -> None:
    miner = setup[0]
    answer = post(miner.url, path, json.dumps(body).encode())
    assert refusal(answer) == (401, "gateway_auth_missing")


def test_a_direct_sealed_request_or_model_list_is_refused(setup: Setup) -> None:
    """Sealed requests come in a session only a pinned gateway key can open (wire v2)."""
    miner = setup[0]
    keys = enclave_keys(miner.url)
    hello, session = initiate(keys.hpke, params(keys))  # not signed by the gateway's key
    assert refusal(post(miner.url, "/v1/sessions", hello, V2)) == (401, "gateway_auth_missing")
    raw, _ = Sealer(keys, session).seal(TEXT, TEXT_BODY)  # in the session the agent refused
    assert refusal(post(miner.url, TEXT, raw, V2)) == (409, "session_unknown")
    assert refusal(httpx.get(f"{miner.url}/v1/models", timeout=10)) == (
        401,
        "gateway_auth_missing",
    )


def _forgeries(key_id: str, body: bytes) -> dict[str, tuple[str, bytes, dict[str, str], str]]:
    """name -> (path sent, body sent, headers, the refusal expected)."""
    other = ed25519.Ed25519PrivateKey.generate()
    now_ms = int(time.time() * 1000)
    sign = gateway_key.header
    return {
        "signed by another key": (TEXT, body, sign("POST", TEXT, body, key_id, other), "invalid"),
        "for another enclave": (TEXT, body, sign("POST", TEXT, body, "ab" * 32), "invalid"),
        "another body": (TEXT, body + b" ", sign("POST", TEXT, body, key_id), "invalid"),
        "another path": (CHAT, body, sign("POST", TEXT, body, key_id), "invalid"),
        "another method": (TEXT, body, sign("GET", TEXT, body, key_id), "invalid"),
        "two minutes old": (
            TEXT,
            body,
            sign("POST", TEXT, body, key_id, now_ms=now_ms - 120_000),
            "stale",
        ),
        "not a header": (TEXT, body, {gateway_auth.HEADER: "v1.1.2.3"}, "invalid"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "signed by another key",
        "for another enclave",
        "another body",
        "another path",
        "another method",
        "two minutes old",
        "not a header",
    ],
)
def test_a_forged_or_bent_authorization_is_refused(setup: Setup, case: str) -> None:
    miner = setup[0]
    body = json.dumps(TEXT_BODY).encode()
    path, sent, headers, kind = _forgeries(gateway_key.hpke_key_id(miner.url), body)[case]
    assert refusal(post(miner.url, path, sent, headers)) == (401, f"gateway_auth_{kind}")


def test_a_captured_authorization_is_taken_once(setup: Setup) -> None:
    miner = setup[0]
    body = json.dumps(TEXT_BODY).encode()
    headers = gateway_key.header("POST", TEXT, body, gateway_key.hpke_key_id(miner.url))
    first = post(miner.url, TEXT, body, headers)
    again = post(miner.url, TEXT, body, headers)
    assert first.status_code == 200 and first.json()["choices"]
    assert refusal(again) == (401, "gateway_auth_replayed")


def test_the_gateway_holding_the_pinned_key_gets_answers(setup: Setup) -> None:
    _, gw, key, _ = setup
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    chat = client.chat.completions.create(**CHAT_BODY)  # type: ignore[call-overload]
    text = client.completions.create(**TEXT_BODY)  # type: ignore[call-overload]
    streamed = list(client.completions.create(**TEXT_BODY, stream=True))  # type: ignore[call-overload]
    assert chat.choices[0].message.content
    assert text.choices[0].text
    assert streamed


def test_evidence_health_and_releases_need_no_gateway_authorization(setup: Setup) -> None:
    miner = setup[0]
    assert httpx.get(f"{miner.url}/healthz", timeout=10).status_code == 200
    assert enclave_keys(miner.url).hpke  # /v1/attestation answered
    release = post(miner.url, "/v1/secrets", b"{}", {"Content-Type": envelope.SEALED_CONTENT_TYPE})
    # refused on its own terms (no release key pinned here), not for want of the gateway's
    assert refusal(release) == (403, "secret_release_disabled")


def test_an_agent_pinning_no_gateway_key_answers_no_inference(setup: Setup, tmp_path: Path) -> None:
    chips = setup[3]
    body = json.dumps(TEXT_BODY).encode()
    with (
        engine(tmp_path, "e1") as eng,
        agent(chips, eng.url, tmp_path / "agent.log", TEEROUTE_AGENT_GATEWAY_KEYS="") as miner,
    ):
        headers = gateway_key.header("POST", TEXT, body, gateway_key.hpke_key_id(miner.url))
        answer = post(miner.url, TEXT, body, headers)
    assert refusal(answer) == (403, "gateway_auth_disabled")


def test_a_gateway_with_another_key_gets_no_answer_and_says_why(
    setup: Setup, tmp_path: Path
) -> None:
    miner, _, _, chips = setup
    other = gateway_key.write_pem(tmp_path / "other.pem", ed25519.Ed25519PrivateKey.generate())
    lease = verified_lease("m0", miner.url, chips)
    config = write_config(
        tmp_path / "gateway.yaml",
        {"pool": [("m0", miner.url)]},
        leases={"pool": [lease]},
        settings={"gatewayKeyFile": str(other)},
    )
    key = create_key(config, "10")
    with gateway(config, "other-gateway") as gw:
        answer = httpx.post(
            f"{gw.url}/v1/completions",
            json=TEXT_BODY,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
    # the enclave's refusal is the endpoint's failure, not the client's: never a 401 to them
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_auth"


def test_the_development_flag_serves_anyone(setup: Setup, tmp_path: Path) -> None:
    chips = setup[3]
    with (
        engine(tmp_path, "e2") as eng,
        agent(
            chips,
            eng.url,
            tmp_path / "agent.log",
            TEEROUTE_AGENT_GATEWAY_KEYS="",
            TEEROUTE_AGENT_ALLOW_ANY_CALLER="true",
        ) as miner,
    ):
        answer = post(miner.url, TEXT, json.dumps(TEXT_BODY).encode())
    assert answer.status_code == 200
    assert "ANY caller" in (tmp_path / "agent.log").read_text()


@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({"TEEROUTE_AGENT_ALLOW_ANY_CALLER": "true", "TEEROUTE_AGENT_POOL": "ns/pool"}, "settings"),
        ({"TEEROUTE_AGENT_GATEWAY_KEYS": "not-a-key"}, "agent_gateway_keys"),
    ],
    ids=["serving anyone while serving a pool", "a gateway key that is not one"],
)
def test_the_agent_refuses_to_start_so_configured(
    setup: Setup, settings: dict[str, str], where: str
) -> None:
    """A namespace editor adding the development flag to an operator's Deployment gets pods
    that do not start, rather than pods serving anyone with the pool's released secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEEROUTE_")}
    env |= {
        "TEEROUTE_TEE": "simulated",
        "NODE_NAME": NODE,
        "TEEROUTE_SIMULATED_DIR": str(setup[3]),
        "TEEROUTE_AGENT_PORT": str(free_port()),  # were it to start, on a port of its own
        **settings,
    }
    done = subprocess.run(
        [sys.executable, "-m", "teeroute_enclave"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert f"invalid settings ({where})" in done.stderr
