"""Concurrency: no interleaving of requests, in one process or across processes sharing the
database, spends more than the balance; a cancelled reserve does not lock credit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from teeroute_gateway.ledger import InsufficientCredit, Ledger
from teeroute_gateway.ledger import sqlite as ledger_sqlite

from .conftest import query, usage_record

pytestmark = pytest.mark.anyio
COST = 1_000
AFFORDABLE = 50


async def test_concurrent_requests_never_spend_more_than_the_balance(
    ledger: Ledger, ledger_url: str
) -> None:
    _, account = await ledger.create_key("race", AFFORDABLE * COST)

    async def request(n: int) -> None:
        hold = await ledger.reserve(account.id, COST, f"req-{n}")
        await ledger.settle(hold, usage_record(account.id, f"req-{n}", cost_nano=COST))

    outcomes = await asyncio.gather(*(request(n) for n in range(200)), return_exceptions=True)

    succeeded = [outcome for outcome in outcomes if outcome is None]
    refused = [outcome for outcome in outcomes if isinstance(outcome, InsufficientCredit)]
    assert (len(succeeded), len(refused)) == (AFFORDABLE, 200 - AFFORDABLE), outcomes
    after = await ledger.account(account.id)
    assert after is not None
    assert (after.balance_nano, after.held_nano) == (0, 0)
    assert query(ledger_url, "SELECT count(*), sum(charged_nano) FROM ledger_usage") == [
        (AFFORDABLE, AFFORDABLE * COST)
    ]


async def test_two_processes_never_spend_more_than_the_balance(
    ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    _, account = await ledger.create_key("race", AFFORDABLE * COST)
    worker = Path(__file__).with_name("race_worker.py")
    argv = [sys.executable, str(worker), ledger_url, account.id, "100", str(COST)]
    processes = [
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    summaries = await asyncio.to_thread(_race, processes)

    assert sum(s["ok"] for s in summaries) == AFFORDABLE, summaries
    assert sum(s["refused"] for s in summaries) == 200 - AFFORDABLE, summaries
    assert all(s["ok"] > 0 for s in summaries), f"the processes did not overlap: {summaries}"
    after = await ledger.account(account.id)
    assert after is not None
    assert (after.balance_nano, after.held_nano) == (0, 0)
    assert query(ledger_url, "SELECT count(*), sum(charged_nano) FROM ledger_usage") == [
        (AFFORDABLE, AFFORDABLE * COST)
    ]


def _race(processes: list[subprocess.Popen[str]]) -> list[dict[str, int]]:
    """Start both once both are ready; their summaries."""
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=120)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert all(process.returncode == 0 for process in processes), outputs
    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]


async def test_a_cancelled_reserve_leaves_no_hold_behind(ledger: Ledger) -> None:
    _, account = await ledger.create_key("team-a", 10_000)
    tasks = [asyncio.create_task(ledger.reserve(account.id, 100, f"req-{n}")) for n in range(20)]
    await asyncio.sleep(0)  # each reserve is queued in the database worker
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(100):  # the orphaned holds are released in the background
        after = await ledger.account(account.id)
        if after is None or after.held_nano == 0:
            break
        await asyncio.sleep(0.02)
    assert after is not None
    assert (after.balance_nano, after.held_nano) == (10_000, 0)


@pytest.mark.parametrize(
    "bad", [{"input_tokens": 2**70}, {"public_model": None}], ids=["overflow", "not-null"]
)
async def test_an_operation_that_fails_midway_fails_alone_and_leaves_nothing_half_done(
    ledger: Ledger, bad: dict[str, Any]
) -> None:
    """In one batch with others, a settle whose record the database refuses (a count no
    column can hold; a missing model name) after the hold was taken."""
    _, account = await ledger.create_key("team-a", 10_000)
    good = [await ledger.reserve(account.id, 1_000, f"req-{n}") for n in range(5)]
    hold = await ledger.reserve(account.id, 1_000, "req-bad")
    outcomes = await asyncio.gather(
        ledger.settle(hold, usage_record(account.id, "req-bad", **bad)),
        *(ledger.settle(hold, usage_record(account.id, hold.request_id)) for hold in good),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], Exception), outcomes[0]
    assert "req-bad" not in str(outcomes[0]), "the error quotes the row's values"
    assert all(not isinstance(outcome, BaseException) for outcome in outcomes[1:]), outcomes
    assert await _money(ledger, account.id) == (10_000 - 5 * 1_000, 1_000)  # the bad one: held
    assert await ledger.usage("req-bad") is None
    await ledger.release(hold)
    assert await _money(ledger, account.id) == (10_000 - 5 * 1_000, 0)


async def _money(ledger: Ledger, account_id: str) -> tuple[int, int]:
    account = await ledger.account(account_id)
    assert account is not None
    return account.balance_nano, account.held_nano


def open_together(path: str, count: int) -> list[sqlite3.Error]:
    """`count` threads open the ledger's connection to `path` at the same moment."""
    start, failures = threading.Barrier(count), []

    def open_it() -> None:
        start.wait()
        try:
            with contextlib.closing(ledger_sqlite._connect(path)) as conn:
                conn.execute("SELECT count(*) FROM t").fetchone()
        except sqlite3.Error as error:
            failures.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_connections_opening_a_new_file_together_all_switch_it_to_wal(tmp_path: Path) -> None:
    """Gateway workers starting together on a file not yet in WAL race to switch it; SQLite
    tells the losers "database is locked" at once, without waiting, so each must try again
    (before, about one round in seven failed here)."""
    for round_ in range(30):
        path = str(tmp_path / f"ledger-{round_}.db")
        with contextlib.closing(sqlite3.connect(path)) as conn:  # a rollback-journal file
            conn.execute("CREATE TABLE t (x)")
            conn.commit()
        assert open_together(path, 6) == [], round_
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
