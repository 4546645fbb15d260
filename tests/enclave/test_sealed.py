"""Sealed mode through a real agent process and a real engine simulator: a request sealed with
the client half of `teeroute.sealing.envelope` comes back as frames that open to exactly what
the engine answered, streamed as the engine sends it, with a receipt signed by the attested key
that reports the engine's usage. Whatever is altered on the way fails with a typed error, and an
engine that dies mid-stream still gives an authenticated end."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from teeroute.sealing import envelope, hpke
from teeroute.sealing.receipts import Receipt
from teeroute_enclave.sealed import engine_request
from tests import gateway_key

from .sealed_client import (
    EnclaveKeys,
    agent_process,
    enclave_keys,
    meta_for,
    post_sealed,
    seal,
    sse_json,
    stream_sealed,
    without_ids,
)
from .test_agent import chip_dir  # noqa: F401 - a fixture, used by name
from .test_agent_proxy import (
    MODEL,
    PROMPT,
    engine_connections,
    engine_process,
    long_answer_seed,
    wait_until,
)

CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"
PACE = 20  # tokens per second
PUBLIC_MODEL = "public-name"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    with engine_process(log, "--tokens-per-s", str(PACE)) as (url, _):
        yield url


@pytest.fixture(scope="module")
def agent(
    engine: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    with agent_process(chip_dir, engine, tmp_path_factory.mktemp("agent") / "agent.log") as url:
        yield url


@pytest.fixture(scope="module")
def keys(agent: str) -> EnclaveKeys:
    return enclave_keys(agent)


def engine_answer(engine: str, path: str, body: dict[str, Any]) -> bytes:
    """What the engine sends for the body the agent forwards (a stream asks for usage)."""
    if body.get("stream"):
        body = {**body, "stream_options": {"include_usage": True}}
    answer = httpx.post(f"{engine}{path}", json=body, timeout=60)
    assert answer.status_code == 200
    return answer.content


def check_receipt(receipt: Receipt, usage: dict[str, int], request_id: str) -> None:
    assert (receipt.input_tokens, receipt.output_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert receipt.usage_source == "engine"
    assert (receipt.status, receipt.complete) == (200, True)
    assert (receipt.model, receipt.served_model) == (MODEL, MODEL)
    assert receipt.request_id == request_id


@pytest.mark.parametrize("aead", list(hpke.Aead))
@pytest.mark.parametrize("path", [CHAT, TEXT])
def test_a_sealed_stream_opens_to_the_engines_stream_with_a_receipt_of_its_usage(
    agent: str, engine: str, keys: EnclaveKeys, aead: hpke.Aead, path: str
) -> None:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 12, "seed": 3, "stream": True}
    body.update(
        {"messages": [{"role": "user", "content": PROMPT}]} if path == CHAT else {"prompt": PROMPT}
    )
    sealed, opener = seal(keys, path, body, aead)
    answer = post_sealed(agent, path, sealed, opener, {"X-Request-Id": "req-1"})

    assert answer.status == 200
    assert answer.headers["content-type"] == "text/event-stream"
    assert answer.finished and answer.pieces[-1] == b""
    events = sse_json(answer.plaintext)
    assert without_ids(events) == without_ids(sse_json(engine_answer(engine, path, body)))
    assert answer.plaintext.endswith(b"data: [DONE]\n\n")
    receipt = answer.verified_receipt(keys, sealed)
    check_receipt(receipt, events[-1]["usage"], "req-1")


@pytest.mark.parametrize("aead", list(hpke.Aead))
def test_a_sealed_json_answer_opens_to_the_engines_answer(
    agent: str, engine: str, keys: EnclaveKeys, aead: hpke.Aead
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    sealed, opener = seal(keys, CHAT, body, aead)
    answer = post_sealed(agent, CHAT, sealed, opener, {"X-Request-Id": "req-2"})

    assert (answer.status, answer.finished) == (200, True)
    opened = json.loads(answer.plaintext)
    assert without_ids(opened) == without_ids(json.loads(engine_answer(engine, CHAT, body)))
    check_receipt(answer.verified_receipt(keys, sealed), opened["usage"], "req-2")


def test_without_a_request_id_the_receipt_gets_a_fresh_one(agent: str, keys: EnclaveKeys) -> None:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    ids = set()
    for _ in range(2):
        sealed, opener = seal(keys, TEXT, body)
        ids.add(post_sealed(agent, TEXT, sealed, opener).verified_receipt(keys, sealed).request_id)
    assert len(ids) == 2 and all(len(name) == 32 for name in ids)


def test_the_upstream_model_header_names_the_model_the_engine_gets(
    agent: str, keys: EnclaveKeys
) -> None:
    body = {"model": PUBLIC_MODEL, "prompt": "hi", "max_tokens": 2}
    sealed, opener = seal(keys, TEXT, body)
    answer = post_sealed(agent, TEXT, sealed, opener, {"X-Teeroute-Upstream-Model": MODEL})
    receipt = answer.verified_receipt(keys, sealed)
    assert answer.status == 200
    assert (receipt.model, receipt.served_model) == (PUBLIC_MODEL, MODEL)


def test_an_engine_error_is_sealed_too_and_its_receipt_counts_nothing(
    agent: str, keys: EnclaveKeys
) -> None:
    body = {"model": PUBLIC_MODEL, "prompt": "secret prompt", "max_tokens": 2}
    sealed, opener = seal(keys, TEXT, body)
    answer = post_sealed(agent, TEXT, sealed, opener)  # no upstream model: the engine has none
    receipt = answer.verified_receipt(keys, sealed)
    assert answer.status == 404 and answer.finished
    assert json.loads(answer.plaintext)["error"]
    assert (receipt.status, receipt.input_tokens, receipt.output_tokens) == (404, 0, 0)
    assert (receipt.usage_source, receipt.served_model) == ("counted", PUBLIC_MODEL)


def test_meta_max_tokens_caps_what_the_engine_generates(agent: str, keys: EnclaveKeys) -> None:
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 60, "seed": long_answer_seed(60)}
    meta = {**meta_for(TEXT, body), "max_tokens": 3}  # what the gateway reserved credit for
    sealed, opener = seal(keys, TEXT, body, meta=meta)
    receipt = post_sealed(agent, TEXT, sealed, opener).verified_receipt(keys, sealed)
    assert receipt.output_tokens == 3


@pytest.mark.parametrize(
    ("path", "body", "bound", "limits"),
    [
        (CHAT, {"n": 3, "max_tokens": 100}, 30, {"max_tokens": 10}),
        (TEXT, {"n": 2, "best_of": 4, "max_tokens": 100}, 40, {"max_tokens": 10}),
        (TEXT, {"prompt": ["a", "b"], "max_tokens": 100}, 10, {"max_tokens": 5}),
        (TEXT, {"prompt": ["a", "b"]}, 10, {"max_tokens": 5}),
        (
            CHAT,
            {"max_tokens": 100, "max_completion_tokens": 3},
            50,
            {"max_tokens": 50, "max_completion_tokens": 3},
        ),
    ],
)
def test_meta_max_tokens_bounds_all_the_completions_the_body_asks_for(
    path: str, body: dict[str, Any], bound: int, limits: dict[str, int]
) -> None:
    forwarded = engine_request(body, {"path": path, "max_tokens": bound}, None)
    assert {k: forwarded[k] for k in limits} == limits


@pytest.mark.parametrize(
    ("body", "meta"),
    [
        ({"model": MODEL, "prompt": PROMPT}, {"max_tokens": None}),  # no bound: unheld output
        ({"model": MODEL, "prompt": PROMPT, "n": 5}, {"max_tokens": 2}),  # 5 answers, 2 held
        ({"model": MODEL, "prompt": [PROMPT] * 3}, {"max_tokens": 2}),
    ],
)
def test_a_sealed_body_asking_for_more_than_its_bound_is_refused(
    agent: str, keys: EnclaveKeys, body: dict[str, Any], meta: dict[str, Any]
) -> None:
    sealed, opener = seal(keys, TEXT, body, meta={**meta_for(TEXT, body), **meta})
    status, kind, message = refused(post_sealed(agent, TEXT, sealed, opener))
    assert (status, kind) == (400, "sealed_envelope_invalid")
    assert message.startswith("meta.max_tokens")


def test_sealed_frames_arrive_as_the_engine_sends_them(agent: str, keys: EnclaveKeys) -> None:
    tokens = 40  # 2 s at the engine's pace
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": tokens,
        "seed": long_answer_seed(tokens),
        "stream": True,
    }
    sealed, opener = seal(keys, TEXT, body)
    arrivals = post_sealed(agent, TEXT, sealed, opener).arrivals
    assert len(arrivals) >= tokens
    assert arrivals[0] < arrivals[-1] / 2  # a buffering agent delivers all at the end


def test_a_client_leaving_a_sealed_stream_closes_the_engine_connection(
    agent: str, engine: str, keys: EnclaveKeys
) -> None:
    tokens = 200  # 10 s at the engine's pace
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": tokens,
        "seed": long_answer_seed(tokens),
        "stream": True,
    }
    sealed, opener = seal(keys, TEXT, body)
    with stream_sealed(agent, TEXT, sealed, opener) as (_, frames):
        next(frames)
        assert engine_connections(engine) > 0
    assert wait_until(lambda: engine_connections(engine) == 0, tokens / PACE - 2)
    sealed, opener = seal(keys, TEXT, {"model": MODEL, "prompt": "again", "max_tokens": 2})
    assert post_sealed(agent, TEXT, sealed, opener).finished


# --- what is refused ------------------------------------------------------------------


def refused(answer: Any) -> tuple[int, str, str]:
    return answer.status, answer.error["error"]["type"], answer.error["error"]["message"]


def test_a_flipped_ciphertext_byte_fails_to_open(agent: str, keys: EnclaveKeys) -> None:
    sealed, opener = seal(keys, TEXT, {"model": MODEL, "prompt": "hi"})
    document = sealed.to_json()
    ciphertext = bytearray(sealed.ciphertext)
    ciphertext[5] ^= 1
    document["ciphertext"] = envelope.b64(bytes(ciphertext))
    content = json.dumps(document).encode()
    status, kind, _ = refused(post_sealed(agent, TEXT, sealed, opener, content=content))
    assert (status, kind) == (400, "sealed_open_failed")


def test_metadata_changed_on_the_way_fails_to_open(agent: str, keys: EnclaveKeys) -> None:
    sealed, opener = seal(keys, TEXT, {"model": MODEL, "prompt": "hi", "max_tokens": 2})
    document = sealed.to_json()
    document["meta"]["max_tokens"] = 2000
    content = json.dumps(document).encode()
    status, kind, _ = refused(post_sealed(agent, TEXT, sealed, opener, content=content))
    assert (status, kind) == (400, "sealed_open_failed")


def test_a_request_sealed_to_another_enclave_is_421(agent: str, keys: EnclaveKeys) -> None:
    _, other = hpke.generate_key_pair()
    sealed, opener = seal(EnclaveKeys(other, keys.signing), TEXT, {"model": MODEL, "prompt": "hi"})
    status, kind, message = refused(post_sealed(agent, TEXT, sealed, opener))
    assert (status, kind) == (421, "sealed_key_mismatch")
    assert "key_id" in message


def test_a_request_sealed_for_another_path_is_400(agent: str, keys: EnclaveKeys) -> None:
    sealed, opener = seal(keys, TEXT, {"model": MODEL, "prompt": "hi"})
    status, kind, message = refused(post_sealed(agent, CHAT, sealed, opener))
    assert (status, kind) == (400, "sealed_envelope_invalid")
    assert message.startswith("meta.path")


@pytest.mark.parametrize(
    ("content", "check"),
    [
        (b"not json", "body"),
        (b'{"teeroute_sealed": "v0"}', "teeroute_sealed"),
        (b'{"teeroute_sealed": "v1", "meta": {}, "key_id": "x"}', "key_id"),
    ],
)
def test_an_unreadable_envelope_is_400_naming_the_check(
    agent: str, keys: EnclaveKeys, content: bytes, check: str
) -> None:
    sealed, opener = seal(keys, TEXT, {"model": MODEL, "prompt": "hi"})
    status, kind, message = refused(post_sealed(agent, TEXT, sealed, opener, content=content))
    assert (status, kind) == (400, "sealed_envelope_invalid")
    assert message.startswith(check)


def test_a_sealed_body_that_is_not_a_json_object_is_400(agent: str, keys: EnclaveKeys) -> None:
    sealed, opener = envelope.seal_request(keys.hpke, meta_for(TEXT, {"model": MODEL}), b"[1]")
    status, kind, _ = refused(post_sealed(agent, TEXT, sealed, opener))
    assert (status, kind) == (400, "invalid_request")


# --- freshness and replay (replay.py) --------------------------------------------------


def test_a_replayed_sealed_request_is_409_and_gets_no_second_answer(
    agent: str, keys: EnclaveKeys
) -> None:
    sealed, opener = seal(keys, TEXT, {"model": MODEL, "prompt": "hi", "max_tokens": 2})
    # a copy altered on the way neither opens nor uses up the genuine request
    document = sealed.to_json()
    document["ciphertext"] = envelope.b64(
        sealed.ciphertext[:-1] + bytes([sealed.ciphertext[-1] ^ 1])
    )
    altered = post_sealed(agent, TEXT, sealed, opener, content=json.dumps(document).encode())
    assert refused(altered)[:2] == (400, "sealed_open_failed")
    first = post_sealed(agent, TEXT, sealed, opener)
    assert (first.status, first.finished) == (200, True)
    again, other_opener = seal(keys, TEXT, {"model": MODEL, "prompt": "hi"})
    # the same bytes again (the opener is only for reading an answer, and none comes)
    replayed = post_sealed(agent, TEXT, again, other_opener, content=sealed.to_bytes())
    status, kind, message = refused(replayed)
    assert (status, kind) == (409, "sealed_request_replayed")
    assert message.startswith("meta.sealed_at")
    assert (replayed.pieces, replayed.receipt) == ([], b"")


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_request_sealed_outside_the_window_is_400_stale(
    agent: str, keys: EnclaveKeys, offset: int
) -> None:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    meta = {**meta_for(TEXT, body), "sealed_at": int(time.time()) + offset}
    sealed, opener = seal(keys, TEXT, body, meta=meta)
    status, kind, message = refused(post_sealed(agent, TEXT, sealed, opener))
    assert (status, kind) == (400, "sealed_request_stale")
    assert message.startswith("meta.sealed_at: ") and "300 s window" in message


@pytest.mark.parametrize("value", [None, "now", 1.5e9])
def test_a_request_without_a_usable_sealed_at_is_400(
    agent: str, keys: EnclaveKeys, value: object
) -> None:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    sealed, opener = seal(keys, TEXT, body, meta={**meta_for(TEXT, body), "sealed_at": value})
    status, kind, message = refused(post_sealed(agent, TEXT, sealed, opener))
    assert (status, kind) == (400, "sealed_envelope_invalid")
    assert message.startswith("meta.sealed_at")


def test_the_window_is_a_setting(
    engine: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    log = tmp_path / "agent.log"
    with agent_process(chip_dir, engine, log, replay_window_s="30") as agent:
        keys = enclave_keys(agent)
        meta = {**meta_for(TEXT, body), "sealed_at": int(time.time()) - 60}
        sealed, opener = seal(keys, TEXT, body, meta=meta)
        status, kind, message = refused(post_sealed(agent, TEXT, sealed, opener))
        assert (status, kind) == (400, "sealed_request_stale")
        assert "30 s window" in message
        fresh, opener = seal(keys, TEXT, body)
        assert post_sealed(agent, TEXT, fresh, opener).finished


# --- an engine that dies mid-stream -----------------------------------------------------


def test_an_engine_dying_mid_stream_ends_the_sealed_stream_cleanly(
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    tokens = 200  # 10 s at the engine's pace
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "seed": long_answer_seed(tokens),
        "stream": True,
    }
    with (
        engine_process(tmp_path / "engine.log", "--tokens-per-s", str(PACE)) as (url, engine),
        agent_process(chip_dir, url, tmp_path / "agent.log") as agent,
    ):
        keys = enclave_keys(agent)
        sealed, opener = seal(keys, CHAT, body)
        with stream_sealed(agent, CHAT, sealed, opener, {"X-Request-Id": "r-9"}) as (answer, got):
            received = [next(got) for _ in range(4)]
            engine.send_signal(signal.SIGKILL)
            received += list(got)
    assert answer.status == 200 and answer.finished
    assert received[-1] == b""  # the final frame
    error = sse_json(received[-2])
    assert error == [
        {"error": {"message": error[0]["error"]["message"], "type": "engine_error", "code": 502}}
    ]
    deltas = [
        event["choices"][0]["delta"].get("content")
        for event in sse_json(b"".join(received[:-2]))
        if event["choices"]
    ]
    receipt = answer.verified_receipt(keys, sealed)
    assert (receipt.complete, receipt.status, receipt.usage_source) == (False, 200, "counted")
    assert receipt.output_tokens == len([delta for delta in deltas if delta])
    assert receipt.input_tokens == -(-len(PROMPT) // 4)
    assert receipt.request_id == "r-9"


# --- plaintext policy ------------------------------------------------------------------


def test_an_agent_requiring_sealing_refuses_plain_completions(
    engine: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    with agent_process(chip_dir, engine, tmp_path / "agent.log", require_sealed="true") as agent:
        signed = gateway_key.signed_for(agent)
        body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
        plain = httpx.post(f"{agent}{TEXT}", json=body, auth=signed, timeout=10)
        keys = enclave_keys(agent)
        sealed, opener = seal(keys, TEXT, {"model": MODEL, "prompt": "hi", "max_tokens": 2})
        answer = post_sealed(agent, TEXT, sealed, opener)
        models = httpx.get(f"{agent}/v1/models", auth=signed, timeout=10)
    assert (plain.status_code, plain.json()["error"]["type"]) == (403, "sealing_required")
    assert (answer.status, answer.finished) == (200, True)
    assert models.status_code == 200


def test_plain_requests_still_work_by_default(agent: str) -> None:
    start = time.monotonic()
    answer = httpx.post(
        f"{agent}{TEXT}",
        json={"model": MODEL, "prompt": "hi", "max_tokens": 2},
        auth=gateway_key.signed_for(agent),
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["choices"]
    assert time.monotonic() - start < 10
