"""Sealed mode (wire v2) through a real gateway, a real enclave agent (simulated TEE) and a real
engine simulator: the gateway seals plain requests in its session with the enclave (one
handshake per admission), passes client-sealed ones through unopened, bills from the enclave's
MAC-tagged receipt and stores each receipt's proof under the enclave's signed Merkle root."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from teeroute.attestation.evidence import EvidenceDocument, Trust, verify_document
from teeroute.attestation.policy import Policy
from teeroute.sealing import envelope
from teeroute_gateway.client_sessions import SESSIONS_PER_MINUTE
from teeroute_gateway.ledger import open_ledger
from teeroute_sandbox.testing import wait_for

from . import sealed_v2
from .miners import agent, chip_dir, verified_lease
from .procs import CLI, Proc, create_key, engine, gateway, generation, metric

pytestmark = pytest.mark.timeout(240)

PROMPT = "explain sealed inference"
ROOT_EVERY = 4  # K: the agent signs a root every this many receipts
Setup = tuple[Proc, str, dict[str, Any]]


def _config(path: Path, lease: dict[str, Any], forged: dict[str, Any]) -> Path:
    pool = {
        "models": [{"name": "sim-model", "contextLength": 8192}],
        "tee": {"type": "simulated"},
        "pricing": {"inputPerMillion": "1", "outputPerMillion": "2"},
    }

    def miner_pool(name: str, entry: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "MinerPool",
            "metadata": {"name": name},
            "spec": {**pool, "endpoints": [{"name": "m0", "url": entry["url"]}]},
            "status": {"endpoints": [{**entry, "name": "m0"}]},
        }

    def route(name: str, model: str, pool_name: str, sealing: str) -> dict[str, Any]:
        return {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "Route",
            "metadata": {"name": name},
            "spec": {
                "model": model,
                "backends": [{"pool": pool_name}],
                "constraints": {"allowedTee": ["simulated"]},
                "sealing": sealing,
            },
        }

    docs = [
        {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "GatewayConfig",
            "spec": {"ledger": "sqlite:///ledger.db"},
        },
        miner_pool("honest", lease),
        miner_pool("forged", forged),
        route("sim", "sim-model", "honest", "gateway"),
        route("sealed-only", "sim-sealed", "honest", "required"),
        route("forged", "sim-forged", "forged", "gateway"),
    ]
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("sealed")
    chips = chip_dir(tmp_path_factory.mktemp("chips"))
    with (
        engine(tmp, "e0") as eng,
        agent(
            chips,
            eng.url,
            tmp / "agent.log",
            TEEROUTE_AGENT_REQUIRE_SEALED="true",
            TEEROUTE_AGENT_ROOT_RECEIPTS=str(ROOT_EVERY),
        ) as miner,
    ):
        lease = verified_lease("m0", miner.url, chips)
        # a lease naming a signing key the enclave does not hold: evidence it never gave
        forged = {**lease, "signingKeySha256": "ab" * 32}
        config = _config(tmp / "gateway.yaml", lease, forged)
        key = create_key(config, "10")
        with gateway(config) as gw:
            parts = {"lease": lease, "chips": chips, "agent": miner, "engine": eng}
            yield gw, key, parts | {"config": config}


def _chat(stream: bool, model: str = "sim-model", seed: int = 7) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 24,
        "stream": stream,
        "seed": seed,
    }


SESSIONS = 'teeroute_gateway_sealed_sessions_opened_total{pool="default/honest"}'


def test_plain_requests_reach_the_enclave_sealed_and_are_billed_by_receipt(setup: Setup) -> None:
    gw, key, parts = setup
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key)
    direct = openai.OpenAI(base_url=f"{parts['engine'].url}/v1", api_key="x")
    raw = client.chat.completions.with_raw_response.create(**_chat(False))
    answer = raw.parse()
    expected = direct.chat.completions.create(**_chat(False))
    # the agent refuses plain requests (REQUIRE_SEALED), so this answer went sealed
    assert answer.choices[0].message.content == expected.choices[0].message.content
    record = generation(gw, key, raw.headers["x-request-id"])
    assert record["receipt_status"] == "valid"
    receipt = record["receipt"]
    assert receipt["request_id"] == raw.headers["x-request-id"]
    assert receipt["signing_key_sha256"] == parts["lease"]["signingKeySha256"]
    assert receipt["v"] == 2 and len(receipt["session_id"]) == 32
    assert (record["input_tokens"], record["output_tokens"]) == (
        receipt["input_tokens"],
        receipt["output_tokens"],
    )
    assert (receipt["input_tokens"], receipt["output_tokens"]) == (
        expected.usage.prompt_tokens,
        expected.usage.completion_tokens,
    )
    assert record["charged_nano"] > 0


def test_a_plain_stream_is_sealed_on_the_hop_and_opened_for_the_client(setup: Setup) -> None:
    gw, key, parts = setup
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key)
    direct = openai.OpenAI(base_url=f"{parts['engine'].url}/v1", api_key="x")
    pieces, usage = [], None
    with client.chat.completions.with_streaming_response.create(**_chat(True)) as response:
        rid = response.headers["x-request-id"]
        for chunk in response.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
    expected = direct.chat.completions.create(**_chat(False))
    assert "".join(pieces) == expected.choices[0].message.content
    record = generation(gw, key, rid)
    assert record["receipt_status"] == "valid"
    assert usage is not None and usage.completion_tokens == record["receipt"]["output_tokens"]


def test_concurrent_first_requests_share_one_handshake(setup: Setup) -> None:
    """A fresh gateway: eight requests at once open one session, eight more open none."""
    _, _, parts = setup
    config = parts["config"]
    key = create_key(config, "10")
    with gateway(config, "fresh") as gw:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda n: client.chat.completions.create(**_chat(False, seed=n)), range(8))
            )
        assert all(a.choices[0].message.content for a in answers)
        assert metric(gw, SESSIONS) == 1
        for n in range(8):
            assert client.chat.completions.create(**_chat(False, seed=n)).choices
        assert metric(gw, SESSIONS) == 1


@pytest.mark.parametrize("stream", [True, False])
def test_client_session_requests_pass_through_unopened(setup: Setup, stream: bool) -> None:
    gw, key, parts = setup
    session = sealed_v2.open_session(gw.url, key, parts["lease"])
    frame, exchange = sealed_v2.seal(session, _chat(stream))
    answer = sealed_v2.post_sealed(gw.url, key, frame)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == sealed_v2.V2
    assert PROMPT.encode() not in answer.content
    opened = sealed_v2.read_answer(answer.content, exchange, session.receipt_key)
    assert (b"data: [DONE]" in opened.plaintext) is stream
    assert opened.after_receipt == []  # the gateway's own ROOT frames are not the client's
    receipt = opened.receipt
    assert receipt is not None and receipt.request_id == answer.headers["x-request-id"]
    record = generation(gw, key, answer.headers["x-request-id"])
    assert record["receipt_status"] == "valid"
    assert record["output_tokens"] == receipt.output_tokens > 0
    assert record["charged_nano"] > 0


def test_a_oneshot_request_passes_through_unopened(setup: Setup) -> None:
    gw, key, parts = setup
    frame, exchange, receipt_key = sealed_v2.oneshot(parts["lease"], _chat(False))
    answer = sealed_v2.post_sealed(gw.url, key, frame)
    assert answer.status_code == 200, answer.text
    opened = sealed_v2.read_answer(answer.content, exchange, receipt_key)
    assert b'"choices"' in opened.plaintext
    record = generation(gw, key, answer.headers["x-request-id"])
    assert record["receipt_status"] == "valid" and record["charged_nano"] > 0


def test_a_route_that_requires_sealing_refuses_plain_requests(setup: Setup) -> None:
    gw, key, parts = setup
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**_chat(False, "sim-sealed"))
    assert refused.value.code == "sealing_required"
    frame, _, _ = sealed_v2.oneshot(parts["lease"], _chat(False, "sim-sealed"))
    assert sealed_v2.post_sealed(gw.url, key, frame).status_code == 200


def test_a_lease_naming_a_key_the_enclave_does_not_hold_gets_no_session(setup: Setup) -> None:
    """The session binds the evidence the gateway routes on: the enclave refuses a HELLO
    naming another signing key, so nothing is sent, answered or billed."""
    gw, key, _ = setup
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(**_chat(False, "sim-forged"))
    assert failed.value.status_code == 502
    error = failed.value.body
    assert isinstance(error, dict) and error["code"] == "upstream_sealed", error
    assert "session" in error["message"], error


def test_tampered_or_misaddressed_client_frames_get_typed_errors(setup: Setup) -> None:
    gw, key, parts = setup
    session = sealed_v2.open_session(gw.url, key, parts["lease"])
    frame, _ = sealed_v2.seal(session, _chat(False))
    flipped = bytearray(frame)
    flipped[-5] ^= 1
    answer = sealed_v2.post_sealed(gw.url, key, bytes(flipped))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "sealed_open_failed"
    stranger = sealed_v2.open_session(gw.url, key, parts["lease"]).id
    unknown = frame[:8] + os.urandom(16) + frame[24:]  # a session this gateway never opened
    answer = sealed_v2.post_sealed(gw.url, key, unknown)
    assert (answer.status_code, answer.json()["error"]["type"]) == (409, "session_unknown")
    assert stranger != unknown[8:24]
    elsewhere = {**parts["lease"], "hpkeKeySha256": "cd" * 32}
    hello, _ = sealed_v2.hello(parts["lease"])
    answer = sealed_v2.post_hello(gw.url, key, hello, elsewhere["hpkeKeySha256"])
    assert (answer.status_code, answer.json()["error"]["param"]) == (
        400,
        "x-teeroute-enclave-key",
    )
    answer = sealed_v2.post_sealed(gw.url, key, b"TR\x02\x11\x00\x00\x00\x01x")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "sealed_envelope_invalid"


def test_a_key_opening_sessions_without_end_is_held_back(setup: Setup) -> None:
    """Each open costs the enclave a key exchange and a place in its bounded session store:
    one API key opens at most SESSIONS_PER_MINUTE a minute (other keys are not affected)."""
    gw, key, parts = setup
    greedy = create_key(parts["config"], "1")
    for _ in range(SESSIONS_PER_MINUTE):
        sealed_v2.open_session(gw.url, greedy, parts["lease"])
    hello, _ = sealed_v2.hello(parts["lease"])
    held = sealed_v2.post_hello(gw.url, greedy, hello, parts["lease"]["hpkeKeySha256"])
    assert held.status_code == 429, held.text
    assert held.json()["error"]["type"] == "rate_limit_error" and held.headers["retry-after"]
    assert sealed_v2.open_session(gw.url, key, parts["lease"]).id  # another key still opens


def test_a_replayed_client_request_is_refused_by_the_enclave_and_not_billed(
    setup: Setup,
) -> None:
    gw, key, parts = setup
    session = sealed_v2.open_session(gw.url, key, parts["lease"])
    frame, _ = sealed_v2.seal(session, _chat(False))
    first = sealed_v2.post_sealed(gw.url, key, frame)
    assert first.status_code == 200, first.text
    replayed = sealed_v2.post_sealed(gw.url, key, frame)  # the same bytes: a captured request
    assert replayed.status_code == 409, replayed.text
    assert replayed.json()["error"]["type"] == "sealed_request_replayed"
    assert PROMPT not in replayed.text
    assert generation(gw, key, first.headers["x-request-id"])["charged_nano"] > 0
    nothing = httpx.get(
        f"{gw.url}/v1/generation",
        params={"id": replayed.headers["x-request-id"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert nothing.status_code == 404  # a refused request leaves no generation to bill


def test_a_v1_sealed_body_is_refused_naming_wire_v2(setup: Setup) -> None:
    gw, key, parts = setup
    meta = {"path": "/v1/chat/completions", "model": "sim-model", "stream": False}
    public = base64.b64decode(parts["lease"]["hpkePublicKey"])
    sealed, _ = envelope.seal_request(public, {**meta, "max_tokens": 8}, b'{"model":"x"}')
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        content=sealed.to_bytes(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": envelope.SEALED_CONTENT_TYPE},
        timeout=10,
    )
    assert answer.status_code == 400
    assert "x-teeroute-endpoint" not in answer.headers  # refused at the gateway: no miner asked
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("unsupported_wire_version",) * 2
    assert "v2" in error["message"] and "application/vnd.teeroute.sealed.v2" in error["message"]


def test_receipts_are_proven_under_signed_roots(setup: Setup) -> None:
    """Every K receipts the enclave signs a root; the gateway stores each receipt's proof,
    which `teeroute verify receipt --proof` accepts against the attested signing key."""
    gw, key, parts = setup
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key)
    rids = [
        client.chat.completions.with_raw_response.create(**_chat(False, seed=n)).headers[
            "x-request-id"
        ]
        for n in range(ROOT_EVERY)
    ]
    ledger_url = f"sqlite:///{parts['config'].parent / 'ledger.db'}"
    bundle = wait_for(
        lambda: asyncio.run(_proof(ledger_url, rids[-1])), timeout_s=30, what="its proof"
    )
    assert bundle is not None
    config = parts["config"]
    path = config.parent / "proof.json"
    path.write_text(bundle)
    verified = subprocess.run(
        [*CLI, "verify", "receipt", "--proof", str(path), "--signing-key-sha256",
         parts["lease"]["signingKeySha256"]],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    tampered = bundle.replace('\\"output_tokens\\":', '\\"output_tokens\\":1')
    assert tampered != bundle  # the receipt now claims more output than the enclave signed
    path.write_text(tampered)
    refused = subprocess.run(
        [*CLI, "verify", "receipt", "--proof", str(path)], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "proof.path" in refused.stderr, refused.stderr


async def _proof(ledger_url: str, rid: str) -> str | None:
    """The proof the gateway stored for a request, read from its ledger."""
    ledger = open_ledger(ledger_url)
    await ledger.open()
    try:
        return await ledger.receipt_proof(rid)
    finally:
        await ledger.close()


def test_clients_get_fresh_evidence_for_their_own_nonce(setup: Setup) -> None:
    gw, key, parts = setup
    nonce = os.urandom(32)
    answer = httpx.post(
        f"{gw.url}/v1/attestations",
        json={"model": "sim-model", "nonce": base64.b64encode(nonce).decode()},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    [entry] = answer.json()["data"]
    doc = EvidenceDocument.parse(entry["evidence"])
    assert base64.b64decode(doc.nonce) == nonce
    verdict = verify_document(
        doc,
        now=dt.datetime.now(dt.UTC),
        policy=Policy(allowed_tee=frozenset({"simulated"})),
        trust=Trust(simulated_root_pem=(parts["chips"] / "root.crt").read_bytes()),
    )
    assert verdict.ok
    assert entry["hpke_key_sha256"] == parts["lease"]["hpkeKeySha256"]
    assert httpx.post(f"{gw.url}/v1/attestations", json={}, timeout=10).status_code == 401
