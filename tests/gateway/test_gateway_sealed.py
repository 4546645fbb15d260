"""Sealed mode through a real gateway, a real enclave agent (simulated TEE) and a real engine
simulator: the gateway seals plain requests on the hop, passes client-sealed ones through
unopened, bills from the enclave's signed receipt and flags receipts it cannot trust."""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from teeroute.attestation.evidence import EvidenceDocument, Trust, verify_document
from teeroute.attestation.policy import Policy
from teeroute.sealing import envelope, receipts
from teeroute.sealing.envelope import FrameReader

from .miners import agent, chip_dir, verified_lease
from .procs import Proc, create_key, engine, gateway

pytestmark = pytest.mark.timeout(240)

PROMPT = "explain sealed inference"
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
        agent(chips, eng.url, tmp / "agent.log", TEEROUTE_AGENT_REQUIRE_SEALED="true") as miner,
    ):
        lease = verified_lease("m0", miner.url, chips)
        # a lease whose signing key is not the one the agent signs with: its receipts are
        # signed, but not by the attested key
        forged = {**lease, "signingKeySha256": "ab" * 32}
        config = _config(tmp / "gateway.yaml", lease, forged)
        key = create_key(config, "10")
        with gateway(config) as gw:
            yield gw, key, {"lease": lease, "chips": chips, "agent": miner, "engine": eng}


def _record(gw: Proc, key: str, rid: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{gw.url}/v1/generation",
        params={"id": rid},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]  # type: ignore[no-any-return]


def _chat(stream: bool, model: str = "sim-model") -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 24,
        "stream": stream,
        "seed": 7,
    }


def test_plain_requests_reach_the_enclave_sealed_and_are_billed_by_receipt(setup: Setup) -> None:
    gw, key, parts = setup
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key)
    direct = openai.OpenAI(base_url=f"{parts['engine'].url}/v1", api_key="x")
    raw = client.chat.completions.with_raw_response.create(**_chat(False))
    answer = raw.parse()
    expected = direct.chat.completions.create(**{**_chat(False), "model": "sim-model"})
    # the agent refuses plain requests (REQUIRE_SEALED), so this answer went sealed
    assert answer.choices[0].message.content == expected.choices[0].message.content
    record = _record(gw, key, raw.headers["x-request-id"])
    assert record["receipt_status"] == "valid"
    receipt = record["receipt"]
    assert receipt["request_id"] == raw.headers["x-request-id"]
    assert receipt["signing_key_sha256"] == parts["lease"]["signingKeySha256"]
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
    record = _record(gw, key, rid)
    assert record["receipt_status"] == "valid"
    assert usage is not None and usage.completion_tokens == record["receipt"]["output_tokens"]


def _seal(lease: dict[str, Any], body: dict[str, Any]) -> tuple[Any, Any]:
    meta = {
        "path": "/v1/chat/completions",
        "model": body["model"],
        "stream": body["stream"],
        "max_tokens": body["max_tokens"],
    }
    public = base64.b64decode(lease["hpkePublicKey"])
    return envelope.seal_request(public, meta, httpx.Request("POST", "/", json=body).content)


def _post_sealed(gw: Proc, key: str, sealed: Any) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/chat/completions",
        content=sealed.to_bytes(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": envelope.SEALED_CONTENT_TYPE},
        timeout=30,
    )


@pytest.mark.parametrize("stream", [True, False])
def test_client_sealed_requests_pass_through_unopened(setup: Setup, stream: bool) -> None:
    gw, key, parts = setup
    lease = parts["lease"]
    sealed, opener = _seal(lease, _chat(stream))
    answer = _post_sealed(gw, key, sealed)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-teeroute-sealed"] == "v1"
    assert PROMPT.encode() not in answer.content
    plain, receipt_text = b"", None
    for event in FrameReader().feed(answer.content):
        if event.name == envelope.RECEIPT_EVENT:
            receipt_text = event.data
        else:
            plain += opener.open(envelope.frame_ciphertext(event))
    assert opener.finished
    receipt = receipts.verify_receipt(
        receipt_text or b"",
        signing_key_sha256=lease["signingKeySha256"],
        request_sha256=sealed.digest,
        response_sha256=opener.digest.hexdigest(),
        hpke_key_sha256=lease["hpkeKeySha256"],
    )
    assert (b"data: [DONE]" in plain) is stream
    record = _record(gw, key, answer.headers["x-request-id"])
    assert record["receipt_status"] == "valid"
    assert record["output_tokens"] == receipt.output_tokens > 0
    assert record["charged_nano"] > 0


def test_a_route_that_requires_sealing_refuses_plain_requests(setup: Setup) -> None:
    gw, key, parts = setup
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**_chat(False, "sim-sealed"))
    assert refused.value.code == "sealing_required"
    sealed, _ = _seal(parts["lease"], _chat(False, "sim-sealed"))
    assert _post_sealed(gw, key, sealed).status_code == 200


def test_a_receipt_not_signed_by_the_attested_key_is_flagged_and_not_billed(setup: Setup) -> None:
    gw, key, _ = setup
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key)
    raw = client.chat.completions.with_raw_response.create(**_chat(False, "sim-forged"))
    assert raw.parse().choices[0].message.content
    record = _record(gw, key, raw.headers["x-request-id"])
    assert record["receipt_status"] == "invalid"
    assert record["outcome"] == "receipt_invalid"
    assert record["charged_nano"] == 0
    metrics = httpx.get(f"{gw.url}/metrics", timeout=5).text
    assert 'teeroute_gateway_receipts_total{pool="default/forged",status="invalid"}' in metrics


def test_tampered_or_misaddressed_sealed_requests_get_typed_errors(setup: Setup) -> None:
    gw, key, parts = setup
    sealed, _ = _seal(parts["lease"], _chat(False))
    flipped = bytearray(sealed.ciphertext)
    flipped[5] ^= 1
    bad = envelope.SealedRequest(
        sealed.aead, sealed.key_id, sealed.enc, sealed.meta, bytes(flipped)
    )
    answer = _post_sealed(gw, key, bad)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "sealed_open_failed"
    elsewhere = envelope.SealedRequest(
        sealed.aead, "cd" * 32, sealed.enc, sealed.meta, sealed.ciphertext
    )
    answer = _post_sealed(gw, key, elsewhere)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "sealed_key_unavailable"
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        content=b'{"teeroute_sealed": "v1", "meta": {}}',
        headers={"Authorization": f"Bearer {key}", "Content-Type": envelope.SEALED_CONTENT_TYPE},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "sealed_envelope_invalid"


def test_a_replayed_client_sealed_request_is_refused_by_the_enclave_and_not_billed(
    setup: Setup,
) -> None:
    gw, key, parts = setup
    sealed, _ = _seal(parts["lease"], _chat(False))
    first = _post_sealed(gw, key, sealed)
    assert first.status_code == 200, first.text
    replayed = _post_sealed(gw, key, sealed)  # the same bytes: what a captured request is
    assert replayed.status_code == 409, replayed.text
    error = replayed.json()["error"]
    assert error["type"] == "sealed_request_replayed"
    assert error["message"].startswith("meta.sealed_at"), error
    assert PROMPT not in replayed.text
    assert _record(gw, key, first.headers["x-request-id"])["charged_nano"] > 0
    nothing = httpx.get(
        f"{gw.url}/v1/generation",
        params={"id": replayed.headers["x-request-id"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert nothing.status_code == 404  # a refused request leaves no generation to bill


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
    bad = httpx.post(
        f"{gw.url}/v1/attestations",
        json={"model": "sim-model", "nonce": "c2hvcnQ="},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "nonce"
    assert httpx.post(f"{gw.url}/v1/attestations", json={}, timeout=10).status_code == 401
