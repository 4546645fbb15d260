"""TPOT in the usage record, on SQLite and on a real PostgreSQL: a stream's time per output
token is stored and read back (None for whole answers and single-token streams), and a
database made by the v3 schema (before tpot_ms, see v3_schema.py) gains the column in place
while v3 gateways keep settling on it during a rolling update."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import uuid
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from teeroute_gateway.ledger import Ledger, hash_key, open_ledger
from teeroute_gateway.ledger.keys import new_key
from teeroute_gateway.ledger.periods import period_keys
from teeroute_gateway.ledger.rows import to_us

from ..pg import PostgresServer
from .conftest import BACKENDS, Clock, query, usage_record
from .v3_schema import (
    V3_POSTGRES_FUNCTIONS,
    V3_POSTGRES_TABLES,
    V3_SQLITE_INSERT_USAGE,
    V3_SQLITE_SCHEMA,
)

pytestmark = pytest.mark.anyio

OLD_KEY = new_key()
OLD_ACCOUNT = "acct_v3"
OldGateway = Callable[[str], None]  # (request id): settles as a v3 gateway does


@pytest.mark.parametrize("tpot_ms", [12.5, None])
async def test_tpot_is_stored_and_read_back(ledger: Ledger, tpot_ms: float | None) -> None:
    _, account = await ledger.create_key("team-a", 100_000)
    hold = await ledger.reserve(account.id, 5_000, "req-1")
    record = usage_record(account.id, "req-1", tpot_ms=tpot_ms)
    settled = await ledger.settle(hold, record)
    assert settled is not None and settled.tpot_ms == tpot_ms
    assert await ledger.usage("req-1") == settled


def _usage_columns(url: str) -> list[str]:
    if url.startswith("sqlite:///"):
        return [row[1] for row in query(url, "SELECT * FROM pragma_table_info('ledger_usage')")]
    rows = query(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'ledger_usage' "
        "ORDER BY ordinal_position",
    )
    return [row[0] for row in rows]


def _v3_usage(request_id: str) -> dict[str, Any]:
    """The usage a v3 gateway sends: its UsageRecord has no tpot_ms."""
    old = dataclasses.asdict(usage_record(OLD_ACCOUNT, request_id, cost_nano=300))
    del old["tpot_ms"]
    old["charged_nano"] = 300  # what a v3 SQLite ledger stores; ledger_v3_run charges its own
    return old


def _sqlite_v3(directory: Path) -> tuple[str, OldGateway]:
    path = directory / "ledger.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(V3_SQLITE_SCHEMA)
        conn.execute(
            "INSERT INTO ledger_accounts (id, name, key_hash, key_prefix, currency, "
            "balance_nano, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (OLD_ACCOUNT, "old", hash_key(OLD_KEY), OLD_KEY[:8], "USD", 100_000, 0),
        )
        conn.commit()

    def settle(request_id: str) -> None:
        values = (f"hold-{request_id}", *_v3_usage(request_id).values())
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                V3_SQLITE_INSERT_USAGE,
                [to_us(v) if isinstance(v, datetime) else v for v in values],
            )

    return f"sqlite:///{path}", settle


def _postgres_v3(server: PostgresServer) -> tuple[str, OldGateway]:
    url = server.create_database(f"ledger_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in filter(str.strip, V3_POSTGRES_TABLES.split(";")):
            conn.execute(statement)
        for function in V3_POSTGRES_FUNCTIONS:
            conn.execute(function)
        conn.execute(
            "INSERT INTO ledger_accounts (id, name, key_hash, key_prefix, currency, "
            "balance_nano, created_at) VALUES (%s, %s, %s, %s, %s, %s, now())",
            (OLD_ACCOUNT, "old", hash_key(OLD_KEY), OLD_KEY[:8], "USD", 100_000),
        )

    def settle(request_id: str) -> None:
        """Exactly what a v3 gateway sends: a reserve, then a settle, by ledger_v3_run."""
        now = datetime(2025, 6, 15, 12, tzinfo=UTC)
        hold = f"hold-{request_id}"
        reserve = {"op": "reserve", "account": OLD_ACCOUNT, "amount": 1_000, "hold": hold,
                   "request": request_id, "expires": now + timedelta(hours=1),
                   **period_keys(now)}  # fmt: skip
        settle = {"op": "settle", "hold": hold, "usage": _v3_usage(request_id),
                  **period_keys(now)}  # fmt: skip
        with psycopg.connect(url, autocommit=True) as conn:
            for step in (reserve, settle):
                row = conn.execute(
                    "SELECT ledger_v3_run(%s::jsonb)", (orjson.dumps([step]).decode(),)
                ).fetchone()
                assert row is not None and row[0] != [None], row

    return url, settle


@pytest.fixture(params=BACKENDS)
def v3_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, OldGateway]:
    """A ledger database as the v3 schema made it, with one account, and a function that
    settles a request on it the way a v3 gateway does."""
    if request.param == "sqlite":
        return _sqlite_v3(tmp_path_factory.mktemp("ledger"))
    return _postgres_v3(request.getfixturevalue("postgres"))


async def test_a_v3_database_gains_tpot_in_place_while_v3_gateways_keep_settling(
    v3_database: tuple[str, OldGateway], clock: Clock
) -> None:
    url, v3_gateway_settles = v3_database
    before = _usage_columns(url)
    assert "tpot_ms" not in before
    v3_gateway_settles("req-old-1")

    ledgers = [open_ledger(url, clock=clock) for _ in range(2)]  # replicas starting together
    await asyncio.gather(*(opened.open() for opened in ledgers))
    try:
        assert _usage_columns(url) == [*before, "tpot_ms"]  # added last, nothing else moved
        ledger = ledgers[0]
        old = await ledger.usage("req-old-1")
        assert old is not None and old.tpot_ms is None and old.ttft_ms == 20.25

        account = await ledger.authenticate(OLD_KEY)
        assert account is not None
        hold = await ledger.reserve(account.id, 1_000, "req-new")
        settled = await ledger.settle(hold, usage_record(account.id, "req-new", tpot_ms=7.5))
        assert settled is not None and settled.tpot_ms == 7.5
        assert await ledger.usage("req-new") == settled

        v3_gateway_settles("req-old-2")  # a v3 replica during the rolling update
        after = await ledger.usage("req-old-2")
        assert after is not None and after.tpot_ms is None and after.charged_nano == 300
    finally:
        for opened in ledgers:
            await opened.close()
