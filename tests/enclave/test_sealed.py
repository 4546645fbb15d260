"""Sealed mode, wire v2, through a real agent process and a real engine simulator: a request
sealed in a gateway session (inner "none"), in a client session inside it ("client"), or as a
client's one-shot ("oneshot") comes back as CHUNK frames that open to exactly what the engine
answered, streamed as the engine sends it, then a RECEIPT whose MAC tags check with the
sessions' receipt keys and which reports the engine's usage. Whatever is altered or replayed
on the way is refused with a typed error, and an engine that dies mid-stream still gives an
authenticated end."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from teeroute.sealing import envelope, frames
from teeroute.sealing.errors import ReceiptInvalid
from teeroute.sealing.frames import FrameType
from teeroute.sealing.receipt_mac import ReceiptV2, check_tag
from teeroute.sealing.session import Exchange, initiate
from teeroute_enclave.sealed import engine_request
from tests import gateway_key

from .sealed_client import (
    EnclaveKeys,
    Sealer,
    agent_process,
    canonical,
    client_session,
    enclave_keys,
    gateway_session,
    meta_for,
    oneshot,
    params,
    post_sealed,
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
MODES = ["none", "client", "oneshot"]


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


@pytest.fixture(scope="module")
def sealers(agent: str, keys: EnclaveKeys) -> dict[str, Sealer]:
    """One gateway session, and a sealer per mode over it (one client session for "client")."""
    gateway = gateway_session(agent, keys)
    return {
        "none": Sealer(keys, gateway),
        "client": Sealer(keys, gateway, "client", client_session(agent, keys, gateway)),
        "oneshot": Sealer(keys, gateway, "oneshot"),
    }


@pytest.fixture
def gw(sealers: dict[str, Sealer]) -> Sealer:
    return sealers["none"]


def engine_answer(engine: str, path: str, body: dict[str, Any]) -> bytes:
    """What the engine sends for the body the agent forwards (a stream asks for usage)."""
    if body.get("stream"):
        body = {**body, "stream_options": {"include_usage": True}}
    answer = httpx.post(f"{engine}{path}", json=body, timeout=60)
    assert answer.status_code == 200
    return answer.content


def check_usage(receipt: ReceiptV2, usage: dict[str, int], request_id: str) -> None:
    assert (receipt.input_tokens, receipt.output_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert receipt.usage_source == "engine"
    assert (receipt.status, receipt.complete) == (200, True)
    assert (receipt.model, receipt.served_model) == (MODEL, MODEL)
    assert receipt.request_id == request_id


def text_or_chat(path: str, **body: Any) -> dict[str, Any]:
    content = {"messages": [{"role": "user", "content": PROMPT}]} if path == CHAT else {}
    return {"model": MODEL, **({"prompt": PROMPT} if path == TEXT else content), **body}


@pytest.mark.parametrize("inner", MODES)
@pytest.mark.parametrize("path", [CHAT, TEXT])
def test_a_sealed_stream_opens_to_the_engines_stream_with_a_tagged_receipt_of_its_usage(
    agent: str,
    engine: str,
    keys: EnclaveKeys,
    sealers: dict[str, Sealer],
    inner: str,
    path: str,
) -> None:
    sealer = sealers[inner]
    body = text_or_chat(path, max_tokens=12, seed=3, stream=True)
    raw, exchange = sealer.seal(path, body)
    answer = post_sealed(agent, path, raw, exchange, {"X-Request-Id": f"req-{inner}"})

    assert answer.status == 200
    assert answer.headers["content-type"] == frames.CONTENT_TYPE
    assert answer.finished
    events = sse_json(answer.plaintext)
    assert without_ids(events) == without_ids(sse_json(engine_answer(engine, path, body)))
    assert answer.plaintext.endswith(b"data: [DONE]\n\n")
    receipt = answer.checked_receipt(sealer)
    check_usage(receipt, events[-1]["usage"], f"req-{inner}")
    assert (receipt.hpke_key_sha256, receipt.signing_key_sha256) == (
        keys.hpke_sha256,
        keys.signing_sha256,
    )


@pytest.mark.parametrize("inner", MODES)
def test_a_sealed_json_answer_opens_to_the_engines_answer(
    agent: str, engine: str, sealers: dict[str, Sealer], inner: str
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    raw, exchange = sealers[inner].seal(CHAT, body)
    answer = post_sealed(agent, CHAT, raw, exchange, {"X-Request-Id": "req-2"})

    assert (answer.status, answer.finished) == (200, True)
    assert answer.headers["content-length"]  # a whole answer leaves whole
    opened = json.loads(answer.plaintext)
    assert without_ids(opened) == without_ids(json.loads(engine_answer(engine, CHAT, body)))
    check_usage(answer.checked_receipt(sealers[inner]), opened["usage"], "req-2")


def test_receipts_are_numbered_per_gateway_session_across_modes(
    agent: str, sealers: dict[str, Sealer]
) -> None:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    indexes = []
    for inner in MODES:
        raw, exchange = sealers[inner].seal(TEXT, body)
        indexes.append(
            post_sealed(agent, TEXT, raw, exchange).checked_receipt(sealers[inner]).index
        )
    assert indexes == sorted(indexes) and len(set(indexes)) == 3
    assert indexes[2] - indexes[0] == 2


def test_a_receipt_tag_does_not_check_with_another_sessions_key(
    agent: str, keys: EnclaveKeys, gw: Sealer
) -> None:
    raw, exchange = gw.seal(TEXT, {"model": MODEL, "prompt": "hi", "max_tokens": 2})
    answer = post_sealed(agent, TEXT, raw, exchange)
    other = gateway_session(agent, keys)
    assert answer.receipt is not None
    with pytest.raises(ReceiptInvalid) as refused:
        check_tag(answer.receipt, answer.tags, 1, other.receipt_key)
    assert refused.value.check == "receipt.mac"


def test_the_upstream_model_header_names_the_model_the_engine_gets(agent: str, gw: Sealer) -> None:
    raw, exchange = gw.seal(TEXT, {"model": PUBLIC_MODEL, "prompt": "hi", "max_tokens": 2})
    answer = post_sealed(agent, TEXT, raw, exchange, {"X-Teeroute-Upstream-Model": MODEL})
    receipt = answer.checked_receipt(gw)
    assert answer.status == 200
    assert (receipt.model, receipt.served_model) == (PUBLIC_MODEL, MODEL)


def test_an_engine_error_is_sealed_too_and_its_receipt_counts_nothing(
    agent: str, gw: Sealer
) -> None:
    raw, exchange = gw.seal(TEXT, {"model": PUBLIC_MODEL, "prompt": "secret", "max_tokens": 2})
    answer = post_sealed(agent, TEXT, raw, exchange)  # the engine has no such model
    receipt = answer.checked_receipt(gw)
    assert answer.status == 404 and answer.finished
    assert json.loads(answer.plaintext)["error"]
    assert (receipt.status, receipt.input_tokens, receipt.output_tokens) == (404, 0, 0)
    assert (receipt.usage_source, receipt.served_model) == ("counted", PUBLIC_MODEL)


@pytest.mark.parametrize(("inner", "gateway_bound", "client_bound"), [
    ("none", 3, None), ("client", 60, 4), ("oneshot", 5, 60),
])  # fmt: skip
def test_the_smaller_bound_caps_what_the_engine_generates(
    agent: str,
    sealers: dict[str, Sealer],
    inner: str,
    gateway_bound: int,
    client_bound: int | None,
) -> None:
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 60, "seed": long_answer_seed(60)}
    sealer = sealers[inner]
    meta = {**meta_for(TEXT, body, inner), "max_tokens": gateway_bound}
    if client_bound is not None:
        body["max_tokens"] = client_bound  # meta_for puts the body's limit in the client's meta
    raw, exchange = _seal_with(sealer, body, meta)
    receipt = post_sealed(agent, TEXT, raw, exchange).checked_receipt(sealer)
    assert receipt.output_tokens == min(gateway_bound, client_bound or gateway_bound)


def _seal_with(
    sealer: Sealer, body: dict[str, Any], gateway_meta: dict[str, Any]
) -> tuple[bytes, Exchange]:
    """Sealed with the gateway's meta as given, the client's (if any) from the body."""
    if sealer.inner == "none":
        return sealer.seal(TEXT, body, gateway_meta)
    client_frame, exchange, sealer.last_client_key = _inner_frame(sealer, body)
    return sealer.gateway.seal_request(canonical(gateway_meta), client_frame, time.time())[
        0
    ], exchange


def _inner_frame(sealer: Sealer, body: dict[str, Any]) -> tuple[bytes, Exchange, bytes]:
    """A client's frame for `body` (its meta from the body), its Exchange, its receipt key."""
    client_meta = canonical({k: v for k, v in meta_for(TEXT, body).items() if k != "inner"})
    plain = json.dumps(body).encode()
    if sealer.inner == "client":
        assert sealer.client is not None
        frame, exchange = sealer.client.seal_request(client_meta, plain, time.time())
        return frame, exchange, sealer.client.receipt_key
    return oneshot(sealer.keys, client_meta, plain)


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
    agent: str, gw: Sealer, body: dict[str, Any], meta: dict[str, Any]
) -> None:
    raw, exchange = gw.seal(TEXT, body, {**meta_for(TEXT, body), **meta})
    status, kind, message = refused(post_sealed(agent, TEXT, raw, exchange))
    assert (status, kind) == (400, "sealed_envelope_invalid")
    assert message.startswith("meta.max_tokens")


@pytest.mark.parametrize("inner", MODES)
def test_sealed_chunks_arrive_as_the_engine_sends_them(
    agent: str, sealers: dict[str, Sealer], inner: str
) -> None:
    tokens = 40  # 2 s at the engine's pace
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": tokens,
        "seed": long_answer_seed(tokens),
        "stream": True,
    }
    raw, exchange = sealers[inner].seal(TEXT, body)
    arrivals = post_sealed(agent, TEXT, raw, exchange).arrivals
    assert len(arrivals) >= tokens
    assert arrivals[0] < arrivals[-1] / 2  # a buffering agent delivers all at the end


def test_a_client_leaving_a_sealed_stream_closes_the_engine_connection(
    agent: str, engine: str, gw: Sealer
) -> None:
    tokens = 200  # 10 s at the engine's pace
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": tokens,
        "seed": long_answer_seed(tokens),
        "stream": True,
    }
    raw, exchange = gw.seal(TEXT, body)
    with stream_sealed(agent, TEXT, raw, exchange) as (_, pieces):
        next(pieces)
        assert engine_connections(engine) > 0
    assert wait_until(lambda: engine_connections(engine) == 0, tokens / PACE - 2)
    raw, exchange = gw.seal(TEXT, {"model": MODEL, "prompt": "again", "max_tokens": 2})
    assert post_sealed(agent, TEXT, raw, exchange).finished


# --- what is refused ------------------------------------------------------------------


def refused(answer: Any) -> tuple[int, str, str]:
    assert answer.error is not None, f"not refused: {answer.status}"
    return answer.status, answer.error["error"]["type"], answer.error["error"]["message"]


def flip(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :]


def test_a_flipped_ciphertext_byte_fails_to_open(agent: str, gw: Sealer) -> None:
    raw, exchange = gw.seal(TEXT, {"model": MODEL, "prompt": "hi", "max_tokens": 2})
    status, kind, message = refused(post_sealed(agent, TEXT, flip(raw, len(raw) - 20), exchange))
    assert (status, kind) == (400, "sealed_open_failed")
    assert message.startswith("session.open")


def test_metadata_changed_on_the_way_fails_to_open(agent: str, gw: Sealer) -> None:
    raw, exchange = gw.seal(TEXT, {"model": MODEL, "prompt": "hi", "max_tokens": 2})
    at = raw.index(b'"max_tokens":2') + len(b'"max_tokens":')
    altered = raw[:at] + b"9" + raw[at + 1 :]  # the same length: 9 tokens instead of 2
    status, kind, _ = refused(post_sealed(agent, TEXT, altered, exchange))
    assert (status, kind) == (400, "sealed_open_failed")


def test_a_request_sealed_for_another_path_is_400(agent: str, gw: Sealer) -> None:
    raw, exchange = gw.seal(TEXT, {"model": MODEL, "prompt": "hi", "max_tokens": 2})
    status, kind, message = refused(post_sealed(agent, CHAT, raw, exchange))
    assert (status, kind) == (400, "sealed_envelope_invalid")
    assert message.startswith("meta.path")


def test_a_sealed_body_that_is_not_a_json_object_is_400(agent: str, gw: Sealer) -> None:
    meta = canonical(meta_for(TEXT, {"model": MODEL, "max_tokens": 2}))
    raw, exchange = gw.gateway.seal_request(meta, b"[1]", time.time())
    status, kind, _ = refused(post_sealed(agent, TEXT, raw, exchange))
    assert (status, kind) == (400, "invalid_request")


@pytest.mark.parametrize("inner", MODES)
def test_a_replayed_request_is_409_and_gets_no_second_answer(
    agent: str, sealers: dict[str, Sealer], inner: str
) -> None:
    sealer = sealers[inner]
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    raw, exchange = sealer.seal(TEXT, body)
    # a copy altered on the way neither opens nor uses up the genuine request
    assert refused(post_sealed(agent, TEXT, flip(raw, len(raw) - 1), exchange))[:2] == (
        400,
        "sealed_open_failed",
    )
    first = post_sealed(agent, TEXT, raw, exchange)
    assert (first.status, first.finished) == (200, True)
    replayed = post_sealed(agent, TEXT, raw, exchange)
    status, kind, _ = refused(replayed)
    assert (status, kind) == (409, "sealed_request_replayed")
    assert (replayed.pieces, replayed.receipt) == ([], None)


@pytest.mark.parametrize("inner", ["client", "oneshot"])
def test_a_client_frame_rewrapped_by_the_gateway_is_refused(
    agent: str, sealers: dict[str, Sealer], inner: str
) -> None:
    """A gateway that wraps a client's request it already sent in a new REQUEST of its own
    session (fresh counter) gets no second answer: the client's frame is taken once."""
    sealer = sealers[inner]
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    client_frame, exchange, key = _inner_frame(sealer, body)
    sealer.last_client_key = key
    meta = canonical(meta_for(TEXT, body, inner))
    first = sealer.gateway.seal_request(meta, client_frame, time.time())[0]
    assert post_sealed(agent, TEXT, first, exchange).status == 200
    again = sealer.gateway.seal_request(meta, client_frame, time.time())[0]
    status, kind, _ = refused(post_sealed(agent, TEXT, again, exchange))
    assert status == 409 and kind == "sealed_request_replayed"


def test_a_request_of_an_unknown_session_is_409_session_unknown(
    agent: str, keys: EnclaveKeys
) -> None:
    _, never_opened = initiate(keys.hpke, params(keys), gateway_key.PRIVATE.sign)
    sealer = Sealer(keys, never_opened)
    raw, exchange = sealer.seal(TEXT, {"model": MODEL, "prompt": "hi", "max_tokens": 2})
    status, kind, message = refused(post_sealed(agent, TEXT, raw, exchange))
    assert (status, kind) == (409, "session_unknown")
    assert message.startswith("session.id")


def test_a_client_request_of_an_unknown_client_session_is_409(
    agent: str, keys: EnclaveKeys, gw: Sealer
) -> None:
    _, never_opened = initiate(keys.hpke, params(keys, "client"))
    sealer = Sealer(keys, gw.gateway, "client", never_opened)
    raw, exchange = sealer.seal(TEXT, {"model": MODEL, "prompt": "hi", "max_tokens": 2})
    status, kind, message = refused(post_sealed(agent, TEXT, raw, exchange))
    assert (status, kind) == (409, "session_unknown")
    assert message.startswith("client.session")  # the client's to reopen, not the gateway's


def test_a_session_is_refused_once_its_lease_ended(agent: str, keys: EnclaveKeys) -> None:
    gateway = gateway_session(agent, keys, lifetime_s=2)
    sealer = Sealer(keys, gateway)
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    raw, exchange = sealer.seal(TEXT, body)
    assert post_sealed(agent, TEXT, raw, exchange).status == 200
    meta = canonical(meta_for(TEXT, body))
    # sealed while the session lived, sent after its end
    late, exchange = gateway.seal_request(meta, json.dumps(body).encode(), time.time())
    time.sleep(max(0.0, gateway.params.expires_at - time.time()) + 0.2)
    status, kind, _ = refused(post_sealed(agent, TEXT, late, exchange))
    assert (status, kind) == (409, "session_unknown")


@pytest.mark.parametrize("path", [CHAT, "/v1/sessions"])
def test_a_v1_sealed_body_is_refused_naming_wire_v2(
    agent: str, keys: EnclaveKeys, path: str
) -> None:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    sealed, _ = envelope.seal_request(keys.hpke, meta_for(TEXT, body), json.dumps(body).encode())
    for content_type in (envelope.SEALED_CONTENT_TYPE, frames.CONTENT_TYPE):
        answer = httpx.post(
            f"{agent}{path}",
            content=sealed.to_bytes(),
            headers={"Content-Type": content_type},
            timeout=10,
        )
        error = answer.json()["error"]
        assert (answer.status_code, error["type"]) == (400, "unsupported_wire_version")
        assert "wire v2" in error["message"]


@pytest.mark.parametrize(
    ("content", "check"),
    [
        (b"TR\x02", "frame.truncated"),
        (b"XY\x02\x10\x00\x00\x00\x00", "frame.magic"),
        (frames.encode(FrameType.CHUNK, b"x" * 40), "frame.type"),
        (frames.encode(FrameType.REQUEST, b"x" * 40) + b"more", "frame.trailing"),
    ],
)
def test_a_body_that_is_not_one_request_frame_is_400_naming_the_check(
    agent: str, content: bytes, check: str
) -> None:
    answer = httpx.post(f"{agent}{TEXT}", content=content, headers={
        "Content-Type": frames.CONTENT_TYPE}, timeout=10)  # fmt: skip
    error = answer.json()["error"]
    assert (answer.status_code, error["type"]) == (400, "sealed_frame_invalid")
    assert error["message"].startswith(check)


def test_a_sealed_body_over_one_frame_is_413_unread(agent: str) -> None:
    size = frames.HEADER_LEN + frames.MAX_PAYLOAD + 1
    answer = httpx.post(
        f"{agent}{TEXT}", content=b"T" * size, headers={"Content-Type": frames.CONTENT_TYPE},
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 413


# --- an engine that dies mid-stream -----------------------------------------------------


def test_an_engine_dying_mid_stream_ends_the_sealed_stream_cleanly(
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    tokens = 200  # 10 s at the engine's pace
    body = text_or_chat(CHAT, max_tokens=tokens, seed=long_answer_seed(tokens), stream=True)
    with (
        engine_process(tmp_path / "engine.log", "--tokens-per-s", str(PACE)) as (url, engine),
        agent_process(chip_dir, url, tmp_path / "agent.log") as agent,
    ):
        keys = enclave_keys(agent)
        sealer = Sealer(keys, gateway_session(agent, keys))
        raw, exchange = sealer.seal(CHAT, body)
        with stream_sealed(agent, CHAT, raw, exchange, {"X-Request-Id": "r-9"}) as (answer, got):
            received = [next(got) for _ in range(4)]
            engine.send_signal(signal.SIGKILL)
            received += list(got)
    assert answer.status == 200 and answer.finished
    error = sse_json(received[-1])
    assert error == [
        {"error": {"message": error[0]["error"]["message"], "type": "engine_error", "code": 502}}
    ]
    deltas = [
        event["choices"][0]["delta"].get("content")
        for event in sse_json(b"".join(received[:-1]))
        if event["choices"]
    ]
    receipt = answer.checked_receipt(sealer)
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
        sealer = Sealer(keys, gateway_session(agent, keys))
        raw, exchange = sealer.seal(TEXT, body)
        answer = post_sealed(agent, TEXT, raw, exchange)
        models = httpx.get(f"{agent}/v1/models", auth=signed, timeout=10)
    assert (plain.status_code, plain.json()["error"]["type"]) == (403, "sealing_required")
    assert (answer.status, answer.finished) == (200, True)
    assert models.status_code == 200


def test_plain_requests_still_work_by_default(agent: str) -> None:
    answer = httpx.post(
        f"{agent}{TEXT}",
        json={"model": MODEL, "prompt": "hi", "max_tokens": 2},
        auth=gateway_key.signed_for(agent),
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["choices"]
