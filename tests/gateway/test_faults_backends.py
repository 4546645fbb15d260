"""PostgreSQL restarted and Redis lost under load (issue 17, faults), with the real servers
stopped and started again mid-load while clients post whole and streamed requests through a
real gateway process. What the gateway does (docs/faults.md):

- the ledger down: requests that would start are refused, 503 `ledger_unavailable` with
  Retry-After (nothing is served that could not be billed); requests already served wait for
  the ledger to commit their usage before their last bytes go out (retried, bounded), so every
  answer delivered is in the ledger; service resumes by itself when the database is back;
- Redis down: rate limits fail closed, 503 `limiter_unavailable` with Retry-After, and resume
  by themselves when Redis is back (its counts start afresh).

The books are read straight from the database afterwards and reconciled with what every client
was told. 5-30 s each, mostly process start-ups."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from teeroute_gateway.ledger import Hold, UsageRecord, open_ledger, to_nano
from teeroute_gateway.ledger.durable import settle_within
from teeroute_sandbox.testing import wait_for

from . import pg
from .faultload import (
    Answer,
    Load,
    Restartable,
    probe,
    read_books,
    reconcile,
    served_some,
    start_postgres_again,
    summary,
)
from .pg import PostgresServer, postgres_server
from .procs import create_key, engine, lease, write_config
from .redis_server import running_redis

pytestmark = pytest.mark.timeout(240)

CREDIT = "1000"
HOLD_TTL_S = 3
DOWN_S = 3.0


async def _fault_under_load(gw: Restartable, key: str, fault: Callable[[], object]) -> list[Answer]:
    """Load; the fault (blocking: it stops a server, waits, starts it again); the load must
    then be served again without anyone touching the gateway."""
    stop = asyncio.Event()
    load = Load(gw.url, key, clients=16)
    running = asyncio.create_task(load.run(stop))
    try:
        await served_some(load, 40)
        await asyncio.to_thread(fault)
        await served_some(load, 40)
    finally:
        stop.set()
        answers = await running
    return answers


def _refusals(answers: list[Answer]) -> set[tuple[int | None, str | None, bool]]:
    """(status, error code, whether Retry-After came) of every answer not delivered."""
    return {(a.status, a.error_code, a.retry_after is not None) for a in answers if not a.delivered}


def test_a_postgres_restart_under_load_refuses_cleanly_and_loses_no_usage_record(
    tmp_path: Path,
) -> None:
    with postgres_server() as server, engine(tmp_path, "a", "--tokens-per-s", "200") as upstream:
        ledger = server.create_database("faults")
        config = write_config(
            tmp_path / "gw.yaml",
            {"p": [("a", upstream.url)]},
            leases={"p": [lease("a")]},
            settings={"ledger": ledger, "holdTtlS": HOLD_TTL_S},
        )
        key = create_key(config, CREDIT)
        gw = Restartable(config, tmp_path)
        again: list[PostgresServer] = []
        during: list[Answer] = []

        def restart_postgres() -> None:
            pg._stop(server)  # fast shutdown: sessions aborted
            time.sleep(DOWN_S / 2)
            during.append(probe(gw.url, key))
            time.sleep(DOWN_S / 2)
            again.append(start_postgres_again(server))

        gw.start()
        try:
            answers = asyncio.run(_fault_under_load(gw, key, restart_postgres))
            wait_for(lambda: read_books(ledger).holds == 0, HOLD_TTL_S * 10, 0.1, "no holds")
            books = read_books(ledger)
        finally:
            gw.stop()
            for restarted in again:
                pg._stop(restarted)
    counts = summary(answers, books)
    assert _refusals(during) == {(503, "ledger_unavailable", True)}
    assert _refusals(answers) <= {(503, "ledger_unavailable", True)}, counts
    assert reconcile(answers, books, to_nano(CREDIT)) == [], counts


def test_redis_lost_under_load_fails_closed_and_recovers_by_itself(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    with running_redis(tmp_path / "redis") as redis, engine(tmp_path, "a") as upstream:
        ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
        config = write_config(
            tmp_path / "gw.yaml",
            {"p": [("a", upstream.url)]},
            leases={"p": [lease("a")]},
            settings={"ledger": ledger, "holdTtlS": HOLD_TTL_S, "rateLimiter": redis.url},
            route={"rateLimits": {"requestsPerMinute": 1_000_000}},
        )
        key = create_key(config, CREDIT)
        gw = Restartable(config, tmp_path)

        during: list[Answer] = []

        def lose_redis() -> None:
            redis.stop()
            time.sleep(DOWN_S / 2)
            during.append(probe(gw.url, key))
            time.sleep(DOWN_S / 2)
            redis.start()

        gw.start()
        try:
            answers = asyncio.run(_fault_under_load(gw, key, lose_redis))
            wait_for(lambda: read_books(ledger).holds == 0, HOLD_TTL_S * 10, 0.1, "no holds")
            books = read_books(ledger)
        finally:
            gw.stop()
    counts = summary(answers, books)
    assert _refusals(during) == {(503, "limiter_unavailable", True)}
    assert _refusals(answers) <= {(503, "limiter_unavailable", True)}, counts
    assert reconcile(answers, books, to_nano(CREDIT)) == [], counts


def _record(hold: Hold) -> UsageRecord:
    return UsageRecord(
        hold.request_id, hold.account_id, "sim-model", "default/p", "m0", "sim-model", 10, 5,
        True, True, 700, 12.5, 3.0, 200, "ok", False, dt.datetime.now(dt.UTC),
    )  # fmt: skip


def test_a_settle_through_a_postgres_outage_is_committed_once_or_given_up_in_bounded_time() -> None:
    with postgres_server() as server:
        url = server.create_database("settle")
        again: list[PostgresServer] = []

        async def scenario() -> tuple[UsageRecord | None, UsageRecord | None, bool]:
            ledger = open_ledger(url)
            await ledger.open()
            _, account = await ledger.create_key("t", 10**9)
            held = [await ledger.reserve(account.id, 1000, f"gen-{n}") for n in range(2)]
            pg._stop(server)
            settling = asyncio.create_task(settle_within(ledger, held[0], _record(held[0]), 60))
            given_up = await settle_within(ledger, held[1], _record(held[1]), 0.5)
            waited = not settling.done()  # it cannot finish while the database is down
            again.append(await asyncio.to_thread(start_postgres_again, server))
            settled = await settling
            await ledger.close()
            return settled, given_up, waited

        try:
            settled, given_up, waited = asyncio.run(scenario())
            books = read_books(url)
        finally:
            for restarted in again:
                pg._stop(restarted)
    assert waited and given_up is None
    assert settled is not None and settled.charged_nano == 700
    assert books.rows == {"gen-0": (1, 700)}  # once; the one given up is not recorded
    assert books.balance_nano == 10**9 - 700 and books.holds == 1  # gen-1's hold: reaped later
