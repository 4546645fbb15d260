"""The gateway as users meet it: a real `teeroute gateway serve` process in front of real
engine simulators, called with the official openai SDK, curl-like httpx and bad input."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.gateway.procs import Proc, create_key, engine, gateway, lease, write_config

MESSAGES = [{"role": "user", "content": "say something"}]
ADMIN = "tra-test-admin-key"


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gw")


@pytest.fixture(scope="module")
def upstream(tmp: Path) -> Iterator[Proc]:
    with engine(tmp, "a") as proc:
        yield proc


@pytest.fixture(scope="module")
def served(tmp: Path, upstream: Proc) -> Iterator[tuple[Proc, str]]:
    config = write_config(
        tmp / "gw.yaml",
        {"sim": [("sim-0", upstream.url)]},
        leases={"sim": [lease("sim-0")]},
        settings={"adminKeySha256": [hashlib.sha256(ADMIN.encode()).hexdigest()]},
    )
    key = create_key(config, "5")
    with gateway(config) as proc:
        yield proc, key


def client(served: tuple[Proc, str]) -> openai.OpenAI:
    proc, key = served
    return openai.OpenAI(base_url=f"{proc.url}/v1", api_key=key, max_retries=0)


def test_openai_sdk_chat_completion_with_cost(served: tuple[Proc, str]) -> None:
    raw = client(served).chat.completions.with_raw_response.create(
        model="sim-model", messages=MESSAGES, max_tokens=8
    )
    answer = raw.parse()
    assert answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.completion_tokens == 8
    cost = answer.usage.model_extra["cost"]  # type: ignore[index]
    # 1 USD / M input, 2 USD / M output
    assert cost == pytest.approx((answer.usage.prompt_tokens * 1 + 8 * 2) / 1e6)
    assert raw.headers["x-teeroute-pool"] == "default/sim"
    assert raw.headers["x-teeroute-endpoint"] == "default/sim/sim-0"
    assert raw.headers["x-request-id"].startswith("gen-")
    assert float(raw.headers["x-teeroute-cost"]) == pytest.approx(cost)


def test_openai_sdk_stream_ends_with_usage_and_cost(served: tuple[Proc, str]) -> None:
    chunks = list(
        client(served).chat.completions.create(
            model="sim-model", messages=MESSAGES, max_tokens=12, stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    final = chunks[-1]
    assert final.usage is not None and final.usage.completion_tokens == 12
    assert final.usage.model_extra["cost"] > 0  # type: ignore[index]
    assert final.choices and final.choices[0].delta.content is None  # strict clients can index [0]


def test_openai_async_sdk_and_text_completions(served: tuple[Proc, str]) -> None:
    proc, key = served

    async def go() -> tuple[str, int]:
        async with openai.AsyncOpenAI(
            base_url=f"{proc.url}/v1", api_key=key, max_retries=0
        ) as aclient:
            done = await aclient.completions.create(
                model="sim-model", prompt="once upon", max_tokens=5
            )
            stream = await aclient.chat.completions.create(
                model="sim-model", messages=MESSAGES, max_tokens=4, stream=True
            )
            count = 0
            async for chunk in stream:
                count += bool(chunk.choices and chunk.choices[0].delta.content)
            return done.choices[0].text, count

    text, streamed = asyncio.run(go())
    assert text and streamed == 4


def test_models_lists_prices_tee_and_context(served: tuple[Proc, str]) -> None:
    models = client(served).models.list()
    (model,) = models.data
    assert model.id == "sim-model"
    extra = model.model_extra or {}
    assert extra["pricing"] == {
        "input_per_million": "1",
        "output_per_million": "2",
        "currency": "USD",
    }
    assert extra["tee"] == ["simulated"] and extra["context_length"] == 8192


def test_attestations_show_each_endpoints_current_verdict(served: tuple[Proc, str]) -> None:
    proc, _ = served
    body = httpx.get(f"{proc.url}/v1/attestations", params={"model": "sim-model"}).json()
    (entry,) = body["data"]
    assert entry["tee"] == "simulated" and entry["measurement"] == "ab" * 48 and entry["expires_at"]


def test_generation_lookup_returns_the_metered_record(served: tuple[Proc, str]) -> None:
    proc, key = served
    raw = client(served).chat.completions.with_raw_response.create(
        model="sim-model", messages=MESSAGES, max_tokens=3
    )
    rid = raw.headers["x-request-id"]
    for _ in range(50):  # settlement is written after the answer
        found = httpx.get(
            f"{proc.url}/v1/generation",
            params={"id": rid},
            headers={"authorization": f"Bearer {key}"},
        )
        if found.status_code == 200:
            break
        asyncio.run(asyncio.sleep(0.05))
    record = found.json()["data"]
    assert (record["output_tokens"], record["output_reported"], record["status"]) == (3, True, 200)
    assert record["charged_nano"] == record["cost_nano"] > 0


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [
        ("POST", "/v1/chat/completions", b"{nope", "key", 400, "invalid_json"),
        ("POST", "/v1/chat/completions", b'{"model": "sim-model"}', "key", 400, None),
        ("POST", "/v1/chat/completions", b"x" * (5 * 1024 * 1024), "key", 413, "body_too_large"),
        (
            "POST",
            "/v1/chat/completions",
            b'{"model": "nope", "messages": [{"role": "user"}]}',
            "key",
            404,
            "model_not_found",
        ),
        (
            "POST",
            "/v1/chat/completions",
            b'{"model": "sim-model", "messages": [{"role": "user"}]}',
            None,
            401,
            "missing_api_key",
        ),
        (
            "POST",
            "/v1/chat/completions",
            b'{"model": "sim-model", "messages": [{"role": "user"}]}',
            "wrong",
            401,
            "invalid_api_key",
        ),
        (
            "POST",
            "/v1/chat/completions",
            b'{"model": "sim-model", "messages": [{"role": "user"}], "max_tokens": 5000000}',
            "key",
            402,
            "insufficient_credit",
        ),
        ("GET", "/v1/chat/completions", b"", "key", 405, None),
        ("GET", "/v1/nothing", b"", "key", 404, "unknown_url"),
        ("GET", "/v1/miners", b"", "key", 403, "not_admin"),
        ("GET", "/v1/attestations", b"", None, 400, None),
    ],
)
def test_bad_input_gets_the_right_status_and_an_openai_error_body(
    served: tuple[Proc, str],
    method: str,
    path: str,
    body: bytes,
    headers: str | None,
    status: int,
    code: str | None,
) -> None:
    proc, key = served
    auth = (
        {}
        if headers is None
        else {"authorization": f"Bearer {key if headers == 'key' else 'tr-wrong'}"}
    )
    answer = httpx.request(method, proc.url + path, content=body, headers=auth, timeout=30)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    if code is not None:
        assert error["code"] == code
    assert "say something" not in answer.text


def test_metrics_count_requests_without_content_or_keys(served: tuple[Proc, str]) -> None:
    proc, key = served
    list(  # streamed: a whole answer has no time to first token
        client(served).chat.completions.create(
            model="sim-model", messages=MESSAGES, max_tokens=2, stream=True
        )
    )
    text = httpx.get(f"{proc.url}/metrics").text
    assert (
        'teeroute_gateway_requests_total{model="sim-model",pool="default/sim",status="2xx"}' in text
    )
    assert "teeroute_gateway_time_to_first_token_seconds_bucket" in text
    assert 'teeroute_gateway_pool_admitted_endpoints{pool="default/sim"} 1.0' in text
    assert key not in text and "say something" not in text


def test_scoreboard_and_settlement_export_show_what_was_served(
    served: tuple[Proc, str], tmp: Path
) -> None:
    proc, _ = served
    for _ in range(3):
        client(served).chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=4)
    admin = {"authorization": f"Bearer {ADMIN}"}
    (row,) = httpx.get(f"{proc.url}/v1/miners", headers=admin).json()["data"]
    assert row["pool"] == "default/sim" and row["uptime"] == 1.0 and row["status"] == "normal"
    assert row["tokens_per_s_p50"] > 0 and row["by_endpoint"][0]["endpoint"] == "default/sim/sim-0"
    weights = httpx.get(f"{proc.url}/v1/miners", params={"format": "weights"}, headers=admin).json()
    assert weights == {"weights": {"default/sim": 1.0}}
    over_http = httpx.get(f"{proc.url}/v1/settlement", headers=admin).json()["data"]
    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "teeroute.cli",
            "gateway",
            "settlement",
            "--config",
            str(tmp / "gw.yaml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    (pool,) = json.loads(exported.stdout)
    assert pool["pool"] == "default/sim" and pool["requests"] >= 3 and float(pool["amount"]) > 0
    assert over_http[0]["requests"] == pool["requests"]


def test_a_key_disabled_while_cached_is_refused_with_401(
    served: tuple[Proc, str], tmp: Path
) -> None:
    from teeroute_gateway.ledger import open_ledger
    from teeroute_gateway.sources.file import load

    proc, _ = served
    key = create_key(tmp / "gw.yaml", "1")
    first = httpx.post(
        f"{proc.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "sim-model", "messages": MESSAGES, "max_tokens": 2},
    )
    assert first.status_code == 200  # the key is now in the gateway's cache

    async def disable() -> None:
        ledger = open_ledger(load(tmp / "gw.yaml").settings.ledger)
        await ledger.open()
        try:
            account = await ledger.authenticate(key)
            assert account is not None
            await ledger.set_disabled(account.id, True)
        finally:
            await ledger.close()

    asyncio.run(disable())
    again = httpx.post(
        f"{proc.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "sim-model", "messages": MESSAGES, "max_tokens": 2},
    )
    assert again.status_code == 401, again.text
    assert again.json()["error"]["code"] == "invalid_api_key"
