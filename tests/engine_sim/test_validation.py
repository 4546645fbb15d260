"""Request bodies: what is accepted, how prompts are counted, and each refusal's OpenAI error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from teeroute_engine_sim.errors import EngineError
from teeroute_engine_sim.validation import parse_chat, parse_text

MODELS = ("sim-model", "other-model")
HELLO = [{"role": "user", "content": "Hello, world!"}]


def chat(**fields: Any) -> bytes:
    return json.dumps({"model": "sim-model", "messages": HELLO, **fields}).encode()


def text(**fields: Any) -> bytes:
    return json.dumps({"model": "sim-model", "prompt": "Hello, world!", **fields}).encode()


def test_a_chat_request_with_defaults() -> None:
    request = parse_chat(chat(), MODELS)
    assert (request.kind, request.model, request.max_tokens) == ("chat", "sim-model", None)
    assert (request.stream, request.include_usage, request.stop, request.seed) == (
        False,
        False,
        (),
        None,
    )


def test_a_text_request_defaults_to_sixteen_tokens_as_the_legacy_api() -> None:
    assert parse_text(text(), MODELS).max_tokens == 16


def test_without_a_model_the_first_served_model_answers() -> None:
    assert parse_chat(json.dumps({"messages": HELLO}).encode(), MODELS).model == "sim-model"


def test_max_completion_tokens_takes_precedence_over_max_tokens() -> None:
    assert parse_chat(chat(max_tokens=50, max_completion_tokens=7), MODELS).max_tokens == 7
    assert parse_chat(chat(max_tokens=50), MODELS).max_tokens == 50


def test_streaming_options_and_stop_sequences_are_read() -> None:
    request = parse_chat(
        chat(stream=True, stream_options={"include_usage": True}, stop="x", seed=3), MODELS
    )
    assert (request.stream, request.include_usage, request.stop, request.seed) == (
        True,
        True,
        ("x",),
        3,
    )
    assert parse_chat(chat(stop=["a", "b"]), MODELS).stop == ("a", "b")


@pytest.mark.parametrize(
    ("messages", "tokens"),
    [
        (HELLO, 3 + 4 + 3),
        ([{"role": "system", "content": "Be brief."}, *HELLO], 3 + (3 + 3) + (3 + 4)),
        ([{"role": "user", "content": "Hi", "name": "ann"}], 3 + 3 + 1 + 1),
        ([{"role": "assistant", "content": None}], 3 + 3),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "two words"},
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                    ],
                }
            ],
            3 + 3 + 2,
        ),
    ],
)
def test_chat_prompt_tokens_follow_the_per_message_rule(
    messages: list[dict[str, Any]], tokens: int
) -> None:
    assert parse_chat(chat(messages=messages), MODELS).prompt_tokens == tokens


def test_the_same_messages_in_another_key_order_are_the_same_prompt() -> None:
    reordered = b'{"messages": [{"content": "Hello, world!", "role": "user"}]}'
    assert parse_chat(reordered, MODELS).prompt == parse_chat(chat(), MODELS).prompt


@pytest.mark.parametrize(
    ("prompt", "tokens"),
    [
        ("Hello, world!", 4),
        (["Hello, world!"], 4),
        ([1, 2, 3], 3),
        ([[1, 2, 3, 4, 5]], 5),
        ("", 0),
    ],
)
def test_text_prompts_are_a_string_or_token_ids(prompt: object, tokens: int) -> None:
    assert parse_text(text(prompt=prompt), MODELS).prompt_tokens == tokens


BAD_CHAT = [
    (b"{not json", 400, None),
    (b"\xff\xfe", 400, None),
    (b"[1, 2]", 400, None),
    (b"[" * 100_000, 400, None),
    (json.dumps({"model": "sim-model"}).encode(), 400, "messages"),
    (chat(messages=[]), 400, "messages"),
    (chat(messages="hi"), 400, "messages"),
    (chat(messages=[{"content": "no role"}]), 400, "messages[0]"),
    (chat(messages=[{"role": "user", "content": 5}]), 400, "messages[0].content"),
    (chat(messages=[{"role": "user", "content": [{"text": "x"}]}]), 400, "messages[0].content[0]"),
    (
        chat(messages=[{"role": "user", "content": [{"type": "text"}]}]),
        400,
        "messages[0].content[0]",
    ),
    (chat(model="gpt-unknown"), 404, "model"),
    (chat(model=5), 400, "model"),
    (chat(n=2), 400, "n"),
    (chat(n="1"), 400, "n"),
    (chat(max_tokens=0), 400, "max_tokens"),
    (chat(max_tokens=True), 400, "max_tokens"),
    (chat(max_completion_tokens=1.5), 400, "max_completion_tokens"),
    (chat(stream="yes"), 400, "stream"),
    (chat(stream_options={"include_usage": True}), 400, "stream_options"),
    (chat(stream=True, stream_options=[]), 400, "stream_options"),
    (chat(stream=True, stream_options={"include_usage": 1}), 400, "include_usage"),
    (chat(stop=5), 400, "stop"),
    (chat(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    (chat(seed="x"), 400, "seed"),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD_CHAT)
def test_bad_chat_requests_are_refused_with_an_openai_error(
    body: bytes, status: int, param: str | None
) -> None:
    with pytest.raises(EngineError) as refused:
        parse_chat(body, MODELS)
    assert (refused.value.status, refused.value.param) == (status, param)
    error = refused.value.body()["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (json.dumps({"model": "sim-model"}).encode(), "prompt"),
        (text(prompt=["one", "two"]), "prompt"),
        (text(prompt=[]), "prompt"),
        (text(prompt=[1, "two"]), "prompt"),
        (text(prompt=[True]), "prompt"),
        (text(prompt=5), "prompt"),
        (text(max_tokens=-1), "max_tokens"),
    ],
)
def test_bad_text_requests_are_refused(body: bytes, param: str) -> None:
    with pytest.raises(EngineError) as refused:
        parse_text(body, MODELS)
    assert (refused.value.status, refused.value.param) == (400, param)


def test_an_unknown_model_is_model_not_found() -> None:
    with pytest.raises(EngineError) as refused:
        parse_text(text(model="gpt-unknown"), MODELS)
    assert refused.value.body()["error"]["code"] == "model_not_found"
