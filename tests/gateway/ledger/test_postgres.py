"""PostgreSQL only: the ledger survives losing its connections, and refuses a bad URL early."""

from __future__ import annotations

import uuid

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

        # Each of the two connections fails the one batch it gets next, then reconnects.
        failures = 0
        for _ in range(10):
            try:
                assert await ledger.authenticate(key) == account
                hold = await ledger.reserve(account.id, 1_000, "req-1")
                await ledger.release(hold)
                assert await ledger.authenticate(key) == account
                break
            except LedgerError as error:
                assert "57P01" in str(error) or "connection" in str(error), error
                failures += 1
        assert failures <= 2
        after = await ledger.account(account.id)
        assert after is not None and after.held_nano == 0
    finally:
        await ledger.close()


async def test_an_unreachable_database_fails_at_open(postgres: PostgresServer) -> None:
    ledger = open_ledger(postgres.url("no_such_database"))
    with pytest.raises(LedgerError, match="cannot connect"):
        await ledger.open()
