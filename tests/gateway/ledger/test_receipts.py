"""Sealed mode's usage receipts in the ledger, on SQLite and on a real PostgreSQL: a record's
receipt and verdict are stored verbatim and read back by every lookup, the settlement counts
flagged records per pool, and a database made by the first schema (v1, see old_schema.py)
opens upgraded while older gateways keep writing to it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
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

from teeroute_gateway import reports
from teeroute_gateway.ledger import (
    FLAGGED_RECEIPTS,
    RECEIPT_STATUSES,
    Ledger,
    SettlementRow,
    UsageRecord,
    hash_key,
    open_ledger,
)
from teeroute_gateway.ledger.keys import new_key
from teeroute_gateway.ledger.periods import period_keys
from teeroute_gateway.ledger.rows import to_us

from ..pg import PostgresServer
from .conftest import BACKENDS, Clock, query, usage_record
from .old_schema import (
    V1_POSTGRES_FUNCTIONS,
    V1_POSTGRES_TABLES,
    V1_SQLITE_INSERT_USAGE,
    V1_SQLITE_SCHEMA,
)

pytestmark = pytest.mark.anyio

USAGE_TABLE = [
    "request_id", "hold_id", "account_id", "public_model", "pool", "endpoint", "upstream_model",
    "input_tokens", "output_tokens", "input_reported", "output_reported", "cost_nano",
    "latency_ms", "ttft_ms", "status", "outcome", "streamed", "created_at", "charged_nano",
    "capped", "receipt_status", "receipt", "claimed_nano", "bill_reason", "tpot_ms",
]  # fmt: skip


def receipt(request_id: str, padding: int = 0) -> str:
    """A receipt as the gateway stores it: canonical JSON text (sorted keys, no spaces, UTF-8)."""
    body: dict[str, Any] = {
        "v": "v1", "request_id": request_id, "model": "llama-3.1-8b",
        "served_model": "modèle-東京 «ß» 🙂", "input_tokens": 12, "output_tokens": 40,
        "usage_source": "engine", "status": 200, "complete": True,
        "hpke_key_sha256": "ab" * 32, "signing_key_sha256": "cd" * 32,
        "request_sha256": "ef" * 32, "response_sha256": "01" * 32,
        "issued_at": "2025-06-15T12:00:01Z", "signing_key": "A" * 43 + "=",
        "signature": "B" * 86 + "==",
        "note": 'quote " backslash \\ escaped \u00e9' + "é✓𝄞" * padding,
    }  # fmt: skip
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- round trips -----------------------------------------------------------------------------


async def test_a_receipt_and_its_status_round_trip_exactly(ledger: Ledger, ledger_url: str) -> None:
    _, account = await ledger.create_key("team-a", 100_000)
    settled: dict[str, UsageRecord] = {}
    for status in RECEIPT_STATUSES:
        rid = f"req-{status or 'plain'}"
        text = None if status in ("", "missing") else receipt(rid)
        hold = await ledger.reserve(account.id, 2_000, rid)
        record = usage_record(account.id, rid, receipt_status=status, receipt=text)
        settled[rid] = await ledger.settle(hold, record)
        assert settled[rid] == record.charged(1_000, False)

    for rid, record in settled.items():
        assert await ledger.usage(rid) == record
    day = datetime(2025, 6, 15, tzinfo=UTC)
    assert await ledger.usage_records(day, day + timedelta(days=1)) == sorted(
        settled.values(), key=lambda record: record.request_id
    )
    plain = await ledger.usage("req-plain")
    assert plain is not None and (plain.receipt_status, plain.receipt) == ("", None)
    stored = query(
        ledger_url, "SELECT receipt FROM ledger_usage WHERE request_id = ?", ("req-valid",)
    )
    assert stored == [(receipt("req-valid"),)]


async def test_a_large_non_ascii_receipt_is_stored_verbatim(
    ledger: Ledger, ledger_url: str
) -> None:
    text = receipt("req-big", padding=850)
    assert 8_000 < len(text.encode()) < 8_500 and not text.isascii()
    _, account = await ledger.create_key("team-a", 100_000)
    hold = await ledger.reserve(account.id, 2_000, "req-big")
    record = usage_record(account.id, "req-big", receipt_status="valid", receipt=text)
    await ledger.settle(hold, record)

    found = await ledger.usage("req-big")
    assert found is not None and found.receipt == text
    assert query(ledger_url, "SELECT receipt FROM ledger_usage") == [(text,)]
    # What was signed is what is kept: byte for byte, not re-encoded or re-ordered.
    assert found.receipt.encode() == text.encode()


async def test_receipts_are_kept_on_every_settle_path(ledger: Ledger, clock: Clock) -> None:
    """A settle after the hold was reaped records without charging, and a second settle of a
    request returns the first: both keep the first record's receipt."""
    _, account = await ledger.create_key("team-a", 100_000)
    reaped = await ledger.reserve(account.id, 2_000, "req-late", ttl_s=1)
    clock.advance(seconds=2)
    assert await ledger.reap() == 1
    late = await ledger.settle(
        reaped,
        usage_record(account.id, "req-late", receipt_status="valid", receipt=receipt("req-late")),
    )
    assert (late.charged_nano, late.receipt_status, late.receipt) == (
        0, "valid", receipt("req-late")
    )  # fmt: skip
    assert await ledger.usage("req-late") == late

    hold = await ledger.reserve(account.id, 2_000, "req-twice")
    first = await ledger.settle(
        hold, usage_record(account.id, "req-twice", receipt_status="invalid", receipt="{}")
    )
    duplicate = await ledger.reserve(account.id, 2_000, "req-twice")
    again = await ledger.settle(
        duplicate,
        usage_record(account.id, "req-twice", receipt_status="valid", receipt=receipt("x")),
    )
    assert again == first and (again.receipt_status, again.receipt) == ("invalid", "{}")


@pytest.mark.parametrize(
    "fields",
    [
        {"receipt_status": "bogus"},
        {"receipt_status": "VALID"},
        {"receipt_status": "valid", "receipt": '{"a":"\x00"}'},
        {"receipt_status": "invalid", "receipt": '{"a":"\ud800"}'},
        {"receipt_status": "invalid", "receipt": b"{}"},
    ],
)
async def test_a_record_neither_backend_could_store_as_given_is_refused_before_any_write(
    ledger: Ledger, fields: dict[str, Any]
) -> None:
    _, account = await ledger.create_key("team-a", 10_000)
    hold = await ledger.reserve(account.id, 2_000, "req-1")
    with pytest.raises(ValueError, match="receipt"):
        await ledger.settle(hold, usage_record(account.id, "req-1", **fields))
    assert await ledger.usage("req-1") is None
    settled = await ledger.settle(hold, usage_record(account.id, "req-1"))  # the hold is intact
    assert settled.charged_nano == 1_000


def test_charged_copies_every_field_but_the_charge() -> None:
    record = usage_record("acct_1", "req-1", receipt_status="valid", receipt=receipt("req-1"))
    settled = record.charged(700, True)
    assert settled == dataclasses.replace(record, charged_nano=700, capped=True)
    assert type(settled) is UsageRecord and hash(settled) == hash(
        dataclasses.replace(record, charged_nano=700, capped=True)
    )
    assert (record.charged_nano, record.capped) == (0, False)  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        settled.receipt = None  # type: ignore[misc]
    assert [field.name for field in dataclasses.fields(UsageRecord)][-7:] == [
        "charged_nano", "capped", "receipt_status", "receipt", "claimed_nano", "bill_reason",
        "tpot_ms",
    ]  # fmt: skip


# --- settlement ------------------------------------------------------------------------------


async def test_settlement_counts_flagged_records_per_pool_within_the_period(
    ledger: Ledger,
) -> None:
    _, account = await ledger.create_key("team-a", 1_000_000)
    day = datetime(2025, 6, 15, tzinfo=UTC)
    requests = [  # (pool, hour of day 15 or 16, receipt_status, cost: 0 when flagged)
        ("pool-a", 1, "valid", 500),
        ("pool-a", 2, "missing", 0),
        ("pool-a", 3, "invalid", 0),
        ("pool-a", 4, "", 100),  # a plain hop: no receipt expected, not flagged
        ("pool-b", 5, "implausible", 0),
        ("pool-b", 6, "valid", 200),
        ("pool-a", 24, "missing", 0),  # the next day: outside the period
        ("pool-c", 7, "valid", 50),
    ]
    for n, (pool, hour, status, cost) in enumerate(requests):
        hold = await ledger.reserve(account.id, 1_000, f"req-{n}")
        record = usage_record(
            account.id, f"req-{n}", pool=pool, input_tokens=1, output_tokens=2, cost_nano=cost,
            created_at=day + timedelta(hours=hour), receipt_status=status,
            receipt=None if status in ("", "missing") else receipt(f"req-{n}"),
        )  # fmt: skip
        await ledger.settle(hold, record)

    end = day + timedelta(days=1)
    assert await ledger.settlement(day, end) == [
        SettlementRow("pool-a", day, end, 4, 4, 8, 600, "USD", flagged=2, claimed_nano=600),
        SettlementRow("pool-b", day, end, 2, 2, 4, 200, "USD", flagged=1, claimed_nano=200),
        SettlementRow("pool-c", day, end, 1, 1, 2, 50, "USD", flagged=0, claimed_nano=50),
    ]
    assert await ledger.settlement(end, end + timedelta(days=1)) == [
        SettlementRow("pool-a", end, end + timedelta(days=1), 1, 1, 2, 0, "USD", flagged=1),
    ]
    assert set(FLAGGED_RECEIPTS) == {"missing", "invalid", "implausible", "unrooted"}


def test_the_settlement_report_shows_the_flagged_count() -> None:
    start, end = datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)
    row = reports.settlement_row(
        SettlementRow("pool-a", start, end, 5, 10, 20, 1_500, "USD", 2, 1, 1_800)
    )
    assert row == {
        "pool": "pool-a", "from": start, "to": end, "requests": 5, "input_tokens": 10,
        "output_tokens": 20, "amount": "0.0000015", "amount_nano": 1_500, "currency": "USD",
        "flagged": 2, "capped": 1, "claimed_nano": 1_800, "underpaid_nano": 300,
    }  # fmt: skip


# --- upgrades --------------------------------------------------------------------------------


def usage_table_columns(url: str) -> list[str]:
    if url.startswith("sqlite:///"):
        return [row[1] for row in query(url, "SELECT * FROM pragma_table_info('ledger_usage')")]
    rows = query(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'ledger_usage' "
        "ORDER BY ordinal_position",
    )
    return [row[0] for row in rows]


async def test_a_new_database_has_the_receipt_columns_last(ledger: Ledger, ledger_url: str) -> None:
    assert usage_table_columns(ledger_url) == USAGE_TABLE


OLD_KEY = new_key()
OLD_ACCOUNT = "acct_old"
OldGateway = Callable[[str, str, int], None]  # (url, request id, cost): settles as v1 did


def _v1_usage(request_id: str, cost: int) -> dict[str, Any]:
    """The usage an older gateway sends: its UsageRecord has no receipt or claim fields."""
    record = usage_record(OLD_ACCOUNT, request_id, pool="pool-a", cost_nano=cost)
    old = dataclasses.asdict(record)
    del old["receipt_status"], old["receipt"], old["claimed_nano"], old["bill_reason"]
    del old["tpot_ms"]
    old["charged_nano"] = cost  # what a v1 SQLite ledger stores; v1_run computes its own
    return old


def _sqlite_v1(directory: Path) -> tuple[str, OldGateway]:
    path = directory / "ledger.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(V1_SQLITE_SCHEMA)
        conn.execute(
            "INSERT INTO ledger_accounts (id, name, key_hash, key_prefix, currency, "
            "balance_nano, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (OLD_ACCOUNT, "old", hash_key(OLD_KEY), OLD_KEY[:8], "USD", 100_000, 0),
        )
        conn.commit()

    def settle(url: str, request_id: str, cost: int) -> None:
        values = (f"hold-{request_id}", *_v1_usage(request_id, cost).values())
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                V1_SQLITE_INSERT_USAGE,
                [to_us(v) if isinstance(v, datetime) else v for v in values],
            )

    return f"sqlite:///{path}", settle


def _postgres_v1(server: PostgresServer) -> tuple[str, OldGateway]:
    url = server.create_database(f"ledger_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in filter(str.strip, V1_POSTGRES_TABLES.split(";")):
            conn.execute(statement)
        for function in V1_POSTGRES_FUNCTIONS:
            conn.execute(function)
        conn.execute(
            "INSERT INTO ledger_accounts (id, name, key_hash, key_prefix, currency, "
            "balance_nano, created_at) VALUES (%s, %s, %s, %s, %s, %s, now())",
            (OLD_ACCOUNT, "old", hash_key(OLD_KEY), OLD_KEY[:8], "USD", 100_000),
        )

    def settle(url: str, request_id: str, cost: int) -> None:
        """Exactly what a v1 gateway sends: a reserve, then a settle, by ledger_v1_run."""
        now = datetime(2025, 6, 15, 12, tzinfo=UTC)
        hold = f"hold-{request_id}"
        reserve = {"op": "reserve", "account": OLD_ACCOUNT, "amount": 1_000, "hold": hold,
                   "request": request_id, "expires": now + timedelta(hours=1),
                   **period_keys(now)}  # fmt: skip
        settle = {"op": "settle", "hold": hold, "usage": _v1_usage(request_id, cost),
                  **period_keys(now)}  # fmt: skip
        with psycopg.connect(url, autocommit=True) as conn:
            for step in (reserve, settle):
                row = conn.execute(
                    "SELECT ledger_v1_run(%s::jsonb)", (orjson.dumps([step]).decode(),)
                ).fetchone()
                assert row is not None and row[0] != [None], row

    return url, settle


@pytest.fixture(params=BACKENDS)
def v1_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, OldGateway]:
    """A ledger database as the first schema made it, with one account, and a function that
    settles a request on it the way a gateway of that version does."""
    if request.param == "sqlite":
        return _sqlite_v1(tmp_path_factory.mktemp("ledger"))
    return _postgres_v1(request.getfixturevalue("postgres"))


async def test_a_first_schema_database_opens_upgraded_while_old_gateways_keep_writing(
    v1_database: tuple[str, OldGateway], clock: Clock
) -> None:
    url, old_gateway_settles = v1_database
    assert "receipt" not in usage_table_columns(url)
    old_gateway_settles(url, "req-old-1", 300)

    # Gateways of the new version start together on the old database: one upgrades it.
    ledgers = [open_ledger(url, clock=clock) for _ in range(3)]
    await asyncio.gather(*(opened.open() for opened in ledgers))
    try:
        assert usage_table_columns(url) == USAGE_TABLE
        ledger = ledgers[1]
        before = await ledger.usage("req-old-1")
        assert before is not None
        assert (before.receipt_status, before.receipt, before.charged_nano) == ("", None, 300)

        account = await ledger.authenticate(OLD_KEY)
        assert account is not None and account.id == OLD_ACCOUNT
        hold = await ledger.reserve(account.id, 1_000, "req-new")
        record = usage_record(
            account.id, "req-new", pool="pool-a", cost_nano=0, receipt_status="invalid",
            receipt=receipt("req-new"),
        )  # fmt: skip
        settled = await ledger.settle(hold, record)
        assert await ledger.usage("req-new") == settled == record.charged(0, False)

        # During the rolling update an old replica still settles, through its own statements.
        old_gateway_settles(url, "req-old-2", 200)
        after = await ledger.usage("req-old-2")
        assert after is not None and (after.receipt_status, after.receipt) == ("", None)

        day = datetime(2025, 6, 15, tzinfo=UTC)
        end = day + timedelta(days=1)
        assert await ledger.settlement(day, end) == [
            SettlementRow("pool-a", day, end, 3, 300, 150, 500, "USD", flagged=1, claimed_nano=500)
        ]
    finally:
        for opened in ledgers:
            await opened.close()

    again = open_ledger(url, clock=clock)  # opening an upgraded database changes nothing
    await again.open()
    try:
        assert usage_table_columns(url) == USAGE_TABLE
        found = await again.usage("req-new")
        assert found is not None and found.receipt == receipt("req-new")
    finally:
        await again.close()
    if not url.startswith("sqlite:///"):
        functions = query(
            url,
            "SELECT proname FROM pg_proc WHERE proname LIKE 'ledger_v_\\_run' ORDER BY proname",
        )
        assert functions == [("ledger_v1_run",), ("ledger_v4_run",)]  # both versions callable
