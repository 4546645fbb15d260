"""The real server over HTTP: the OpenAI shapes, streaming, errors, failures, disconnects."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from teeroute_engine_sim.tokens import count_tokens
from tests.engine_sim.conftest import Engine, running

HELLO = [{"role": "user", "content": "Hello, world!"}]
SDK_HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello, world!"}]
CHAT = {"model": "sim-model", "messages": HELLO, "max_tokens": 12}
TEXT = {"model": "sim-model", "prompt": "Once upon a time", "max_tokens": 9}
ENDPOINTS = [("/v1/chat/completions", CHAT), ("/v1/completions", TEXT)]


@pytest.fixture
def http(engine: Engine) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine.url, timeout=30) as client:
        yield client


@pytest.fixture
def sdk(engine: Engine) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{engine.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    """The stream's JSON chunks; it must end with [DONE] and hold nothing else."""
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\n\n") if line]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    return [json.loads(event[len("data: ") :]) for event in events[:-1]]


def test_health_is_200_as_vllm(http: httpx.Client) -> None:
    assert http.get("/health").status_code == 200


def test_models_are_listed_in_the_openai_shape(http: httpx.Client) -> None:
    listing = http.get("/v1/models").json()
    assert listing["object"] == "list"
    assert [model["id"] for model in listing["data"]] == ["sim-model", "other-model"]
    assert all(model["object"] == "model" for model in listing["data"])


def test_a_chat_completion_is_deterministic_and_counts_its_tokens(http: httpx.Client) -> None:
    first = http.post("/v1/chat/completions", json=CHAT).json()
    second = http.post("/v1/chat/completions", json=CHAT).json()
    assert first["object"] == "chat.completion"
    assert first["id"] != second["id"]
    assert first["choices"] == second["choices"]
    (choice,) = first["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "length"
    assert first["usage"] == {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}
    assert count_tokens(choice["message"]["content"]) == 12


def test_a_text_completion(http: httpx.Client) -> None:
    body = http.post("/v1/completions", json=TEXT).json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 9, "total_tokens": 13}


def test_another_model_answers_differently(http: httpx.Client) -> None:
    ours = http.post("/v1/chat/completions", json=CHAT).json()
    theirs = http.post("/v1/chat/completions", json={**CHAT, "model": "other-model"}).json()
    assert theirs["model"] == "other-model"
    assert theirs["choices"][0]["message"] != ours["choices"][0]["message"]


def test_without_a_limit_a_chat_ends_with_stop(http: httpx.Client) -> None:
    body = http.post("/v1/chat/completions", json={"messages": HELLO}).json()
    assert body["model"] == "sim-model"
    assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(("path", "request_body"), ENDPOINTS)
def test_a_stream_with_usage_matches_the_unstreamed_answer(
    http: httpx.Client, path: str, request_body: dict[str, Any]
) -> None:
    whole = http.post(path, json=request_body).json()
    streamed = {**request_body, "stream": True, "stream_options": {"include_usage": True}}
    chunks = sse(http.post(path, json=streamed))
    *token_chunks, final = chunks
    assert final["choices"] == []
    assert final["usage"] == whole["usage"]
    if path == "/v1/chat/completions":
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in token_chunks)
        assert text == whole["choices"][0]["message"]["content"]
    else:
        assert {c["object"] for c in chunks} == {"text_completion"}
        text = "".join(c["choices"][0]["text"] for c in token_chunks)
        assert text == whole["choices"][0]["text"]
    assert token_chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


@pytest.mark.parametrize(
    ("path", "content", "status", "param", "code"),
    [
        ("/v1/chat/completions", b"{oops", 400, None, None),
        ("/v1/chat/completions", b'{"model": "sim-model"}', 400, "messages", None),
        ("/v1/chat/completions", json.dumps({**CHAT, "n": 3}).encode(), 400, "n", None),
        ("/v1/completions", b'{"model": "sim-model"}', 400, "prompt", None),
        ("/v1/completions", json.dumps({**TEXT, "model": "nope"}).encode(), 404, "model",
         "model_not_found"),
    ],
)  # fmt: skip
def test_bad_requests_get_openai_error_bodies(
    http: httpx.Client, path: str, content: bytes, status: int, param: str | None, code: str | None
) -> None:
    response = http.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/nowhere", 404), ("GET", "/v1/completions", 405)]
)
def test_unknown_routes_and_methods_are_openai_errors_too(
    http: httpx.Client, method: str, path: str, status: int
) -> None:
    response = http.request(method, path)
    assert response.status_code == status
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_client_leaving_mid_stream_does_not_hurt_the_server(tmp_path: Path) -> None:
    """Paced by its pod environment at 20 tokens/s, the stream lasts ≥ 0.75 s; the client
    leaves after the first event."""
    argv = [sys.executable, "-m", "teeroute_engine_sim"]
    log = tmp_path / "engine.log"
    with (
        running(argv, log, env={"TEEROUTE_ENGINE_TOKENS_PER_S": "20"}) as paced,
        httpx.Client(base_url=paced.url, timeout=30) as http,
    ):
        streamed = {**CHAT, "max_tokens": 1000, "stream": True}
        for _ in range(3):
            with http.stream("POST", "/v1/chat/completions", json=streamed) as response:
                assert next(response.iter_lines()).startswith("data: ")
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert paced.process.poll() is None
    output = log.read_text()
    assert "20 tokens/s" in output  # the settings it announced, from its environment
    assert "Traceback" not in output


def test_the_openai_sdk_completes_a_chat(sdk: openai.OpenAI, http: httpx.Client) -> None:
    done = sdk.chat.completions.create(model="sim-model", messages=SDK_HELLO, max_tokens=12)
    raw = http.post("/v1/chat/completions", json=CHAT).json()
    assert done.choices[0].message.content == raw["choices"][0]["message"]["content"]
    assert done.choices[0].finish_reason == "length"
    assert done.usage is not None
    assert done.usage.total_tokens == 22


def test_the_openai_sdk_streams_a_chat_with_usage(sdk: openai.OpenAI) -> None:
    whole = sdk.chat.completions.create(model="sim-model", messages=SDK_HELLO, max_tokens=12)
    stream = sdk.chat.completions.create(
        model="sim-model",
        messages=SDK_HELLO,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage == whole.usage


def test_the_openai_sdk_streams_a_text_completion(sdk: openai.OpenAI) -> None:
    whole = sdk.completions.create(model="sim-model", prompt="Once upon a time", max_tokens=9)
    stream = sdk.completions.create(
        model="sim-model", prompt="Once upon a time", max_tokens=9, stream=True
    )
    assert "".join(c.choices[0].text for c in stream) == whole.choices[0].text


def test_the_openai_sdk_raises_its_own_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="nope", messages=SDK_HELLO)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="sim-model", messages=SDK_HELLO, n=2)
    assert [model.id for model in sdk.models.list()] == ["sim-model", "other-model"]


def test_teeroute_engine_sim_with_fail_rate_one_fails_every_completion(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "teeroute.cli", "engine-sim", "--fail-rate", "1.0"]
    with (
        running(argv, tmp_path / "engine.log") as failing,
        httpx.Client(base_url=failing.url, timeout=30) as http,
    ):
        for path, request_body in ENDPOINTS:
            response = http.post(path, json=request_body)
            assert response.status_code == 500
            assert response.json() == {
                "error": {
                    "message": "The engine simulator failed this request on purpose (--fail-rate).",
                    "type": "server_error",
                    "param": None,
                    "code": "simulated_failure",
                }
            }
        assert http.get("/health").status_code == 200
        assert http.get("/v1/models").status_code == 200
        assert http.post("/v1/chat/completions", content=b"{").status_code == 400
