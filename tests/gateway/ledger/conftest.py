"""Fixtures for the ledger tests: a ledger on each backend, a real PostgreSQL server, a clock.

Every behaviour test runs on SQLite (a file in tmp_path) and on PostgreSQL (a fresh database
on a server started for the session, see ../pg.py). Tests are async (anyio's pytest plugin,
asyncio backend); the clock is a settable UTC time so periods and expiry are deterministic.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from teeroute_gateway.ledger import Ledger, UsageRecord, open_ledger

from ..pg import PostgresServer, postgres_server

BACKENDS = ["sqlite", "postgres"]


class Clock:
    """A UTC clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def ledger_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A URL to an empty ledger database on the parametrized backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('ledger')}/ledger.db"  # 4 slashes: absolute
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"ledger_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 6, 15, 12, 0, tzinfo=UTC))


@pytest.fixture
async def ledger(ledger_url: str, clock: Clock) -> AsyncIterator[Ledger]:
    opened = open_ledger(ledger_url, clock=clock)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the database directly, as an operator with a SQL shell would."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute(sql, params).fetchall()
    with psycopg.connect(url) as pg:
        return pg.execute(sql.replace("?", "%s"), params).fetchall()


def usage_record(account_id: str, request_id: str, **fields: Any) -> UsageRecord:
    """A finished request's record with plausible values; `fields` override them."""
    values: dict[str, Any] = {
        "request_id": request_id,
        "account_id": account_id,
        "public_model": "llama-3.1-8b",
        "pool": "llama-aks",
        "endpoint": "10.0.0.7:8000",
        "upstream_model": "meta-llama/Llama-3.1-8B-Instruct",
        "input_tokens": 100,
        "output_tokens": 50,
        "input_reported": True,
        "output_reported": False,
        "cost_nano": 1_000,
        "latency_ms": 123.5,
        "ttft_ms": 20.25,
        "status": 200,
        "outcome": "ok",
        "streamed": True,
        "created_at": datetime(2025, 6, 15, 12, 0, 1, 250_000, tzinfo=UTC),
    }
    values.update(fields)
    return UsageRecord(**values)
