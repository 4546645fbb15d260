"""Traces and the ledger backend through the running app: GenAI spans without content, and
the same gateway metering into a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from teeroute_gateway.app import GatewayApp
from teeroute_gateway.lifecycle import Lifecycle
from teeroute_gateway.sources.file import load
from tests.gateway.pg import PostgresServer, postgres_server
from tests.gateway.procs import Proc, create_key, engine, gateway, lease, write_config

PROMPT = "the prompt nobody may log"


async def call(app: GatewayApp, path: str, body: dict[str, Any], key: str) -> tuple[int, bytes]:
    """One HTTP request through the ASGI interface, as uvicorn would deliver it."""
    raw = orjson.dumps(body)
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-length", str(len(raw)).encode()),
        ],
    }
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Proc]:
    with engine(tmp_path, "a") as proc:
        yield proc


def test_spans_follow_genai_conventions_and_carry_no_content(
    tmp_path: Path, upstream: Proc
) -> None:
    config = write_config(
        tmp_path / "gw.yaml", {"p": [("a", upstream.url)]}, leases={"p": [lease("a")]}
    )
    key = create_key(config, "1")
    exporter = InMemorySpanExporter()
    settings = load(config).settings
    lifecycle = Lifecycle(config, settings, span_exporter=exporter)
    app = GatewayApp(lifecycle)
    body = {
        "model": "sim-model",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 4,
    }

    async def go() -> tuple[int, bytes]:
        await lifecycle.start()
        try:
            return await call(app, "/v1/chat/completions", body, key)
        finally:
            await lifecycle.stop()

    status, answer = asyncio.run(go())
    assert status == 200, answer
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert span.name == "chat sim-model"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "sim-model"
    assert attributes["gen_ai.usage.output_tokens"] == 4
    assert attributes["teeroute.pool"] == "default/p"
    completion = orjson.loads(answer)["choices"][0]["message"]["content"]
    for value in attributes.values():
        assert PROMPT not in str(value) and completion not in str(value)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def test_the_gateway_meters_into_postgresql(
    tmp_path: Path, upstream: Proc, postgres: PostgresServer
) -> None:
    import psycopg

    url = postgres.create_database("gateway_e2e")
    config = write_config(
        tmp_path / "gw.yaml",
        {"p": [("a", upstream.url)]},
        leases={"p": [lease("a")]},
        settings={"ledger": url},
    )
    key = create_key(config, "1")
    with gateway(config) as gw:
        import httpx

        for _ in range(5):
            answer = httpx.post(
                f"{gw.url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={
                    "model": "sim-model",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 3,
                },
            )
            assert answer.status_code == 200
    with psycopg.connect(url) as db:
        rows, out, charged = db.execute(
            "SELECT COUNT(*), SUM(output_tokens), SUM(charged_nano) FROM ledger_usage"
        ).fetchone()  # type: ignore[misc]
        balance, held = db.execute("SELECT balance_nano, held_nano FROM ledger_accounts").fetchone()  # type: ignore[misc]
    assert (rows, out) == (5, 15)
    assert balance == 1_000_000_000 - charged and held == 0
