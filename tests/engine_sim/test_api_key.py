"""`--api-key-env NAME`: the simulator as a closed-model provider. Every /v1/ request must
bear `Authorization: Bearer <$NAME>`; others get 401 `invalid_api_key`, and the key is never
echoed (not in answers, not in the log)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from teeroute import cli
from teeroute_engine_sim import cli as engine_cli
from teeroute_engine_sim.app import create_app
from teeroute_engine_sim.auth import RequireApiKey
from teeroute_engine_sim.errors import SettingsInvalid
from teeroute_engine_sim.settings import EngineSettings
from tests.engine_sim.conftest import Engine, running

KEY = "sk-sim-7f3a9c0e2b5d4e1f"  # a value a test can grep for
VARIABLE = "SIM_PROVIDER_KEY"
CHAT = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5}


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Path]]:
    log = tmp_path_factory.mktemp("closed") / "engine.log"
    argv = [sys.executable, "-m", "teeroute_engine_sim", "--api-key-env", VARIABLE]
    with running(argv, log, env={VARIABLE: KEY}) as engine:
        yield engine, log


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert KEY.encode() not in response.content
    error: dict[str, Any] = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    return error


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/chat/completions", CHAT),
        ("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 3}),
        ("GET", "/v1/models", None),
        ("GET", "/v1/no-such-route", None),
    ],
)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Bearer {KEY}x", KEY, f"Basic {KEY}", "Bearer", f"Bearer {KEY[:-1]}"],
    ids=["none", "wrong", "longer", "no-scheme", "basic", "empty", "shorter"],
)
def test_every_v1_request_without_the_key_is_refused(
    closed: tuple[Engine, Path],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    authorization: str | None,
) -> None:
    engine, _ = closed
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = httpx.request(method, engine.url + path, json=body, headers=headers, timeout=10)
    error = error_of(response)
    assert ("Missing" in error["message"]) == (authorization is None)
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_key_opens_every_route_and_health_needs_none(closed: tuple[Engine, Path]) -> None:
    engine, log = closed
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{engine.url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{engine.url}/v1/models", headers=bearer, timeout=10).status_code == 200
    lower = {"Authorization": f"bearer {KEY}"}  # auth schemes ignore case
    assert httpx.get(f"{engine.url}/v1/models", headers=lower, timeout=10).status_code == 200
    answer = httpx.post(f"{engine.url}/v1/chat/completions", json=CHAT, headers=bearer, timeout=10)
    assert answer.status_code == 200 and answer.json()["object"] == "chat.completion"
    assert KEY.encode() not in answer.content
    unknown = httpx.get(f"{engine.url}/v1/nothing", headers=bearer, timeout=10)
    assert unknown.status_code == 404  # past the key, the usual routing errors
    assert KEY not in log.read_text()


def test_the_openai_sdk_works_with_the_key_and_reports_a_wrong_one(
    closed: tuple[Engine, Path],
) -> None:
    engine, _ = closed
    with openai.OpenAI(base_url=f"{engine.url}/v1", api_key=KEY, max_retries=0) as client:
        reply = client.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
    assert reply.usage is not None and reply.usage.completion_tokens <= 4
    wrong = openai.OpenAI(base_url=f"{engine.url}/v1", api_key="sk-wrong", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError) as refused:
        wrong.models.list()
    assert refused.value.code == "invalid_api_key"


def test_without_the_flag_no_key_is_asked() -> None:
    app = create_app(EngineSettings())
    assert RequireApiKey not in [getattr(m, "cls", None) for m in app.user_middleware]


def test_a_named_variable_that_is_unset_or_empty_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.delenv("TEEROUTE_ENGINE_API_KEY_ENV", raising=False)
    assert engine_cli.main(["--port", "1", "--api-key-env", VARIABLE]) == 2
    assert f"${VARIABLE} is unset or empty" in capsys.readouterr().err
    monkeypatch.setenv(VARIABLE, "")
    assert cli.main(["engine-sim", "--port", "1", "--api-key-env", VARIABLE]) == 2
    with pytest.raises(SettingsInvalid):
        create_app(EngineSettings(api_key_env=VARIABLE))


def test_a_bad_variable_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEEROUTE_ENGINE_API_KEY_ENV", raising=False)
    args, _ = engine_cli.engine_parser().parse_known_args(["--api-key-env", "NOT A NAME"])
    with pytest.raises(SettingsInvalid, match="api_key_env"):
        engine_cli.settings_from(args)


def test_the_settings_carry_the_name_never_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, KEY)
    monkeypatch.delenv("TEEROUTE_ENGINE_API_KEY_ENV", raising=False)
    args, _ = engine_cli.engine_parser().parse_known_args(["--api-key-env", VARIABLE])
    settings = engine_cli.settings_from(args)
    assert settings.api_key_env == VARIABLE
    assert KEY not in settings.model_dump_json()


def test_a_request_with_the_key_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the ASGI app without a server: the middleware reads the header once."""
    monkeypatch.setenv(VARIABLE, KEY)
    app = create_app(EngineSettings(api_key_env=VARIABLE))

    async def call(headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
            return await client.post("/v1/chat/completions", json=CHAT, headers=headers)

    assert asyncio.run(call({"Authorization": f"Bearer {KEY}"})).status_code == 200
    refused = asyncio.run(call({}))
    assert refused.status_code == 401
    assert json.loads(refused.content)["error"]["code"] == "invalid_api_key"
