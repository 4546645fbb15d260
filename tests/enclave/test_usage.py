"""The agent's pure pieces of sealed mode: reading usage from the engine's answer as it
passes, counting when the engine reports none, the body the engine gets, the secret store."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from teeroute_enclave import usage
from teeroute_enclave.sealed import engine_request
from teeroute_enclave.secrets_store import SecretRejected, SecretStore, StaleRelease


def event(body: Any) -> bytes:
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def chat_chunk(content: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"model": "served", "choices": [{"index": 0, "delta": delta}], **extra}


STREAM = b"".join(
    [
        event(chat_chunk("", usage=None) | {"choices": [{"delta": {"role": "assistant"}}]}),
        event(chat_chunk("Hel", usage=None)),
        event(chat_chunk('lo "usage": {"x"', usage=None)),  # a quote in content is escaped
        event(chat_chunk(None, usage=None)),
        event(
            {
                "model": "served",
                "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": 2},
            }
        ),
        b"data: [DONE]\n\n",
    ]
)


def feed_in_pieces(meter: usage.Meter, data: bytes, size: int) -> bytes:
    out = b"".join(meter.feed(data[i : i + size]) for i in range(0, len(data), size))
    return out + meter.tail()


@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
def test_a_stream_read_in_any_pieces_gives_its_model_usage_and_deltas(size: int) -> None:
    meter = usage.StreamMeter()
    assert feed_in_pieces(meter, STREAM, size) == STREAM
    assert (meter.model, meter.usage, meter.deltas) == ("served", (7, 2), 2)
    assert usage.account(meter, 99, 200) == usage.Usage(7, 2, "engine")


def test_a_stream_passes_on_only_whole_events_until_its_end() -> None:
    meter = usage.StreamMeter()
    assert meter.feed(b'data: {"a":') == b""
    assert meter.broken_off
    assert meter.feed(b" 1}\n\ndata: {") == b'data: {"a": 1}\n\n'
    assert meter.tail() == b"data: {"


def test_crlf_events_are_events_too() -> None:
    meter = usage.StreamMeter()
    data = STREAM.replace(b"\n", b"\r\n")
    assert meter.feed(data[:-3]) == data[: data.rfind(b"\r\n\r\n", 0, len(data) - 3) + 4]
    assert (meter.model, meter.usage, meter.deltas) == ("served", (7, 2), 2)


def test_an_unfinished_event_is_not_held_back_past_its_limit() -> None:
    meter = usage.StreamMeter()
    long = b"data: " + b"x" * (usage.MAX_PENDING + 1)
    assert meter.feed(long) == long and not meter.broken_off


def test_without_engine_usage_a_stream_is_counted() -> None:
    meter = usage.StreamMeter()
    meter.feed(b"".join(event(chat_chunk(text)) for text in ["a", "", "b", "c"]))
    meter.feed(event({"choices": [{"text": "t"}]}) + event({"x": {"reasoning_content": "r"}}))
    assert meter.usage is None
    assert usage.account(meter, 5, 200) == usage.Usage(5, 5, "counted")
    assert usage.account(meter, 5, 500) == usage.Usage(0, 0, "counted")


def usage_event(prompt: int, completion: int) -> bytes:
    return event(
        {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
    )


def long_stream(tokens: int) -> bytes:
    return event(chat_chunk("word ", usage=None)) * tokens


PAST_KEPT = usage.MAX_KEPT // len(long_stream(1)) + 10  # tokens of a stream read as it passes


@pytest.mark.parametrize("tokens", [3, PAST_KEPT])  # kept whole / read as it passes
def test_the_last_usage_object_with_two_counts_wins(tokens: int) -> None:
    stream = (
        usage_event(1, 1)
        + long_stream(tokens)
        + usage_event(7, 2)
        + event({"usage": {"prompt_tokens": 9}})  # not two counts: ignored
        + event({"choices": [], "usage": None})
        + b"data: [DONE]\n\n"
    )
    meter = usage.StreamMeter()
    assert feed_in_pieces(meter, stream, 4096) == stream
    assert (meter.usage, meter.deltas) == ((7, 2), tokens)
    assert usage.account(meter, 99, 200) == usage.Usage(7, 2, "engine")


@pytest.mark.parametrize("tokens", [3, PAST_KEPT])
def test_usage_and_deltas_follow_the_stream_as_it_grows(tokens: int) -> None:
    meter = usage.StreamMeter()
    meter.feed(long_stream(tokens))
    assert (meter.usage, meter.deltas) == (None, tokens)
    meter.feed(usage_event(4, 5) + event(chat_chunk("more", usage=None)))
    assert (meter.usage, meter.deltas) == ((4, 5), tokens + 1)


def test_a_usage_key_outside_a_data_line_is_not_usage() -> None:
    meter = usage.StreamMeter()
    meter.feed(b'event: x\n: "usage": {"prompt_tokens": 1, "completion_tokens": 1}\n\n')
    meter.feed(b'data: [DONE] "usage": {}\n\n')
    assert meter.usage is None


def test_only_the_first_json_event_names_the_model() -> None:
    meter = usage.StreamMeter()
    meter.feed(b": ping\n\n" + event({"model": "first"}) + event({"model": "second"}))
    assert meter.model == "first"


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"prompt_tokens": 1},
        {"prompt_tokens": True, "completion_tokens": 1},
        {"prompt_tokens": 1.5, "completion_tokens": 1},
        {"prompt_tokens": -1, "completion_tokens": 1},
        {"prompt_tokens": 10**10, "completion_tokens": 1},
    ],
)
def test_a_usage_object_must_hold_two_counts(value: Any) -> None:
    assert usage.engine_usage(value) is None


def test_a_json_answer_gives_its_model_and_usage_at_its_end() -> None:
    body = json.dumps(
        {
            "model": "served",
            "choices": [{"message": {"content": "x" * 9}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        }
    ).encode()
    meter = usage.BodyMeter()
    assert feed_in_pieces(meter, body, 5) == body
    assert usage.account(meter, 1, 200) == usage.Usage(3, 4, "engine")


def test_a_json_answer_without_usage_is_counted_from_its_text() -> None:
    body = {"model": "m", "choices": [{"message": {"content": "x" * 9}}, {"text": "yyyy"}]}
    meter = usage.BodyMeter()
    meter.feed(json.dumps(body).encode())
    meter.tail()
    assert usage.account(meter, 2, 200) == usage.Usage(2, 4, "counted")  # 13 bytes


def test_a_broken_json_answer_counts_nothing() -> None:
    meter = usage.BodyMeter()
    meter.feed(b'{"model": "m", "choi')
    meter.tail()
    assert (meter.model, usage.account(meter, 2, 200)) == (None, usage.Usage(2, 0, "counted"))


@pytest.mark.parametrize(
    ("request_body", "tokens"),
    [
        ({"messages": [{"role": "user", "content": "12345"}]}, 2),
        (
            {
                "messages": [
                    {"content": [{"type": "text", "text": "1234"}, {"type": "image"}]},
                    {"content": "é"},
                ]
            },
            2,
        ),  # 4 + 2 bytes
        ({"prompt": "12345678"}, 2),
        ({"prompt": ["1234", "5"]}, 2),
        ({"prompt": [1, 2, 3]}, 3),
        ({"prompt": [[1, 2], [3]]}, 3),
        ({}, 0),
    ],
)
def test_prompt_tokens_are_text_bytes_over_four(request_body: dict[str, Any], tokens: int) -> None:
    assert usage.prompt_tokens(request_body) == tokens


def test_meter_for_follows_the_content_type() -> None:
    assert isinstance(usage.meter_for("text/event-stream; charset=utf-8"), usage.StreamMeter)
    assert isinstance(usage.meter_for("application/json"), usage.BodyMeter)


# --- the engine's request ----------------------------------------------------------------


def test_the_engine_gets_the_upstream_model_and_a_stream_asks_for_usage() -> None:
    request = {"model": "public", "stream": True, "stream_options": {"x": 1}, "max_tokens": 5}
    assert engine_request(request, {"max_tokens": 5}, "upstream") == {
        "model": "upstream",
        "stream": True,
        "stream_options": {"x": 1, "include_usage": True},
        "max_tokens": 5,
    }
    assert request["model"] == "public"  # the caller's dict is left alone


def test_without_the_header_or_a_stream_the_body_is_unchanged() -> None:
    request = {"model": "public", "stream": False, "max_tokens": 5}
    assert engine_request(request, {"max_tokens": 5}, None) == request


@pytest.mark.parametrize(
    ("request_body", "cap", "expected"),
    [
        ({"max_tokens": 50}, 3, {"max_tokens": 3}),
        ({"max_tokens": 2}, 3, {"max_tokens": 2}),
        ({}, 3, {"max_tokens": 3}),
        ({"max_completion_tokens": 9}, 3, {"max_completion_tokens": 3}),
        ({"max_tokens": None}, 3, {"max_tokens": 3}),
    ],
)
def test_meta_max_tokens_caps_the_engines_limit(
    request_body: dict[str, Any], cap: int, expected: dict[str, Any]
) -> None:
    assert engine_request(request_body, {"max_tokens": cap}, None) == expected


# --- the secret store ----------------------------------------------------------------------


def test_the_store_keeps_the_engine_key_in_memory_and_others_in_files(tmp_path: Path) -> None:
    store = SecretStore(tmp_path / "secrets")
    store.replace({"engine-api-key": "k1", "a": "1", "b": "2"}, 1)
    assert store.engine_api_key == "k1"
    assert sorted(p.name for p in (tmp_path / "secrets").iterdir()) == ["a", "b"]
    store.replace({"b": "3"}, 2)
    assert store.engine_api_key is None
    assert {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()} == {"b": "3"}
    assert stat.S_IMODE((tmp_path / "secrets" / "b").stat().st_mode) == 0o600


def test_without_a_directory_the_store_is_memory_only() -> None:
    store = SecretStore()
    store.replace({"a": "1", "engine-api-key": "k"}, 1)
    assert store.names == {"a", "engine-api-key"}


def test_the_store_applies_only_a_newer_release() -> None:
    store = SecretStore()
    store.replace({"engine-api-key": "new"}, 20)
    for replayed in (20, 19):
        with pytest.raises(StaleRelease):
            store.replace({"engine-api-key": "old"}, replayed)
    assert store.engine_api_key == "new"


@pytest.mark.parametrize(
    "released",
    [
        {"../a": "x"},
        {".hidden": "x"},
        {"a/b": "x"},
        {"": "x"},
        {"engine-api-key": "two words"},
        {"engine-api-key": ""},
    ],
)
def test_the_store_refuses_what_it_cannot_apply_and_names_no_value(
    released: dict[str, str],
) -> None:
    store = SecretStore()
    with pytest.raises(SecretRejected) as refused:
        store.replace(released, 1)
    assert not [value for value in released.values() if value and value in str(refused.value)]
    assert store.names == frozenset()
