"""`kill -9` of the gateway (issue 17, faults), its ledger a SQLite file or a real PostgreSQL.

The attacker's case: the ledger stalls (another session holds the account's lock) just as
answers are ready, and the gateway is killed then. An answer delivered before its usage record
was committed is an answer nobody pays for: the client must get no answer until the record is
in. Then the load case: a real gateway process killed twice while clients post whole and
streamed requests, restarted on the same port each time. Afterwards the books are read
straight from the database and reconciled with what every client was answered: each answer
delivered in full is in the ledger exactly once, charged what the client was told; the balance
is the credit less the charges; and the holds of the requests cut off are released (they
expire and the restarted gateway reaps them), so no credit stays locked. The longer run with
more kills is e2e/bench/faults.py. 10-60 s per case, mostly gateway start-ups."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from teeroute_gateway.ledger import to_nano
from teeroute_sandbox.testing import wait_for

from .faultload import Answer, Load, Restartable, read_books, reconcile, served_some, summary
from .pg import postgres_server
from .procs import create_key, engine, lease, write_config

pytestmark = pytest.mark.timeout(240)

CREDIT = "1000"
KILLS = 2
HOLD_TTL_S = 3  # short, so the holds of the killed gateway expire within the test


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with postgres_server() as server:
        yield server.create_database("faults")


async def _killed_under_load(gw: Restartable, key: str, kills: int) -> list[Answer]:
    stop = asyncio.Event()
    load = Load(gw.url, key, clients=16)
    running = asyncio.create_task(load.run(stop))
    for _ in range(kills):
        await served_some(load, 40)
        gw.kill()
        await asyncio.to_thread(gw.start)
    await served_some(load, 40)
    stop.set()
    return await running


def test_kill_9_under_load_loses_no_delivered_answer_and_leaks_no_hold(
    tmp_path: Path, ledger_url: str
) -> None:
    with engine(tmp_path, "a", "--ttft-ms", "5") as upstream:
        config = _config(tmp_path, upstream.url, ledger_url)
        key = create_key(config, CREDIT)
        gw = Restartable(config, tmp_path)
        gw.start()
        try:
            answers = asyncio.run(_killed_under_load(gw, key, KILLS))
            wait_for(  # the restarted gateway reaps the holds of the killed one
                lambda: read_books(ledger_url).holds == 0,
                timeout_s=HOLD_TTL_S * 10,
                what="the killed gateway's holds to be released",
            )
        finally:
            gw.stop()
    books = read_books(ledger_url)
    counts = summary(answers, books)
    assert counts["delivered"] >= 40 * (KILLS + 1), counts
    assert counts["no_answer"] > 0, counts  # the kills did cut requests off
    assert reconcile(answers, books, to_nano(CREDIT)) == [], (counts, gw.logs()[-3000:])


@contextmanager
def ledger_stalled(ledger: str) -> Iterator[None]:
    """Another session holds the ledger's write lock (SQLite) or the account row (PostgreSQL):
    every charge waits until it lets go."""
    if ledger.startswith("sqlite:///"):
        db = sqlite3.connect(ledger.removeprefix("sqlite:///"), isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()
        return
    with psycopg.connect(ledger) as conn:  # a transaction until the block ends
        conn.execute("SELECT id FROM ledger_accounts FOR UPDATE").fetchall()
        yield
        conn.rollback()


def _until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


async def _cut_while_the_ledger_stalls(gw: Restartable, key: str, ledger: str) -> list[Answer]:
    load = Load(gw.url, key, max_tokens=10)
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        asking = [asyncio.create_task(load.one(http, stream=n % 2 == 0)) for n in range(4)]
        await asyncio.to_thread(
            wait_for, lambda: read_books(ledger).holds == 4, 30, 0.05, "the requests' holds"
        )
        with ledger_stalled(ledger):
            # the engine answers in about a second: give the gateway ample time to deliver
            # (it must not) before it dies
            await asyncio.to_thread(_until, lambda: all(t.done() for t in asking), 5)
            gw.kill()
        return list(await asyncio.gather(*asking))


def test_no_answer_is_delivered_before_its_usage_record_is_committed(
    tmp_path: Path, ledger_url: str
) -> None:
    with engine(tmp_path, "a", "--ttft-ms", "5", "--tokens-per-s", "10") as upstream:
        config = _config(tmp_path, upstream.url, ledger_url)
        key = create_key(config, CREDIT)
        gw = Restartable(config, tmp_path)
        gw.start()
        try:
            answers = asyncio.run(_cut_while_the_ledger_stalls(gw, key, ledger_url))
            gw.start()  # a new gateway, which reaps what the dead one held
            wait_for(lambda: read_books(ledger_url).holds == 0, HOLD_TTL_S * 10, 0.1, "reaping")
        finally:
            gw.stop()
    books = read_books(ledger_url)
    assert reconcile(answers, books, to_nano(CREDIT)) == [], [vars(a) for a in answers]


def _config(tmp_path: Path, upstream_url: str, ledger_url: str) -> Path:
    """One pool of one miner, the ledger under test, holds that expire in HOLD_TTL_S."""
    return write_config(
        tmp_path / "gw.yaml",
        {"p": [("a", upstream_url)]},
        leases={"p": [lease("a")]},
        settings={"ledger": ledger_url, "holdTtlS": HOLD_TTL_S},
    )
