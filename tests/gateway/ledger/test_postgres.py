"""PostgreSQL only: the ledger survives losing its connections and refuses a bad URL early."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from teeroute_gateway.ledger import LedgerError, open_ledger

from ..pg import PostgresServer

pytestmark = pytest.mark.anyio


async def test_the_ledger_reconnects_after_its_connections_are_killed(
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database(f"ledger_{uuid.uuid4().hex[:12]}")
    ledger = open_ledger(url)
    await ledger.open()
    try:
        key, account = await ledger.create_key("team-a", 1_000)
        with psycopg.connect(url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed is not None and killed[0] >= 1

        # Both connections are dead: the hot operations reconnect and go through.
        for n in range(4):
            assert await ledger.authenticate(key) == account
            hold = await ledger.reserve(account.id, 1_000, f"req-{n}")
            await ledger.release(hold)
        after = await ledger.account(account.id)
        assert after is not None and after.held_nano == 0
        # Other statements may fail once per dead connection rather than risk running twice.
        credited = None
        for _ in range(3):
            with contextlib.suppress(LedgerError):
                credited = await ledger.add_credit(account.id, 1)
                break
        assert credited is not None and credited.balance_nano == 1_001
    finally:
        await ledger.close()


async def test_an_unreachable_database_fails_at_open(postgres: PostgresServer) -> None:
    ledger = open_ledger(postgres.url("no_such_database"))
    with pytest.raises(LedgerError, match="cannot connect"):
        await ledger.open()


async def test_a_reserve_sent_twice_holds_once(postgres: PostgresServer) -> None:
    """What makes resending a batch after a lost connection safe."""
    url = postgres.create_database(f"ledger_{uuid.uuid4().hex[:12]}")
    ledger = open_ledger(url)
    await ledger.open()
    try:
        _, account = await ledger.create_key("team-a", 1_000)
        step = {"op": "reserve", "account": account.id, "amount": 600, "hold": "hold_x",
                "request": "req-1", "expires": datetime.now(UTC).isoformat(), "day": "",
                "month": ""}  # fmt: skip
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(2):
                row = conn.execute("SELECT ledger_v4_run(%s::jsonb)", (json.dumps([step]),))
                assert row.fetchone() == ([{"granted": True}],)
        after = await ledger.account(account.id)
        assert after is not None and after.held_nano == 600
    finally:
        await ledger.close()
