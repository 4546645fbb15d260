"""The SQLite ledger's schema and operations, each a function of a connection.

Run on the ledger's worker threads (sqlite_session): writes inside the writer's `BEGIN IMMEDIATE`
transaction, which holds SQLite's single write lock, so each operation may read, decide and
write without another process slipping in between (the same file may be shared by several
gateway processes). Times are stored as epoch microseconds.

Upgrades: SCHEMA is what a new file gets; a file made by an older gateway gets what it lacks
from create_schema, which runs under the write lock on every open. The rule: columns are only
ever added, each to the end of its table with a default (NULL or a constant), and listed in
ADDED_COLUMNS so an older file gets them by ALTER TABLE; nothing is renamed or dropped. Old
gateways sharing the file keep working (their statements name their columns), and a new
file and an upgraded one have the same columns in the same order. Tables are only ever added
(CREATE TABLE IF NOT EXISTS, as ledger_receipt_proofs for wire v2's receipt proofs); older
gateways never touch the ones they do not know.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from datetime import datetime

from .errors import UnknownAccount
from .models import FLAGGED_RECEIPTS, Account, Hold, SettlementRow, UsageRecord
from .periods import Standing, period_keys, refusal
from .rows import (
    ACCOUNT_COLUMNS,
    USAGE_COLUMNS,
    USAGE_INSERT_COLUMNS,
    account_from_row,
    from_us,
    settlement_from_row,
    to_us,
    usage_from_row,
    usage_values,
)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance_nano INTEGER NOT NULL,
    held_nano INTEGER NOT NULL DEFAULT 0,
    spend_limit_nano INTEGER,
    spend_period TEXT CHECK (spend_period IN ('day', 'month')),
    period_key TEXT NOT NULL DEFAULT '',
    period_spent_nano INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_holds (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
    amount_nano INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_holds_by_expiry ON ledger_holds (expires_at);
CREATE TABLE IF NOT EXISTS ledger_usage (
    request_id TEXT PRIMARY KEY,
    hold_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    public_model TEXT NOT NULL,
    pool TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    input_reported INTEGER NOT NULL,
    output_reported INTEGER NOT NULL,
    cost_nano INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    streamed INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    charged_nano INTEGER NOT NULL,
    capped INTEGER NOT NULL,
    receipt_status TEXT NOT NULL DEFAULT '',
    receipt TEXT,
    claimed_nano INTEGER,
    bill_reason TEXT NOT NULL DEFAULT '',
    tpot_ms REAL
);
CREATE INDEX IF NOT EXISTS ledger_usage_by_time ON ledger_usage (created_at);
CREATE TABLE IF NOT EXISTS ledger_receipt_proofs (
    request_id TEXT PRIMARY KEY,
    proof TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"""

# Columns added since the first schema, in order: (table, column, definition) for ALTER TABLE.
ADDED_COLUMNS = (
    ("ledger_usage", "receipt_status", "TEXT NOT NULL DEFAULT ''"),  # sealed mode
    ("ledger_usage", "receipt", "TEXT"),
    ("ledger_usage", "claimed_nano", "INTEGER"),  # billing: what the miner claimed, uncapped
    ("ledger_usage", "bill_reason", "TEXT NOT NULL DEFAULT ''"),
    ("ledger_usage", "tpot_ms", "REAL"),  # issue 18: time per output token of a stream
)

# What a record's miner claimed: the cost where an older gateway left claimed_nano NULL.
CLAIMED = "coalesce(u.claimed_nano, u.cost_nano)"
# The period an account's spend belongs to now, from the two keys passed as parameters.
CURRENT_PERIOD = "CASE spend_period WHEN 'day' THEN :day WHEN 'month' THEN :month ELSE '' END"

# Statements put together from the constant column lists in rows.py, never from input
# (hence the S608 exemptions); every value is a bound parameter.
SELECT_ACCOUNT = f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts"  # noqa: S608
ADD_CREDIT = (
    "UPDATE ledger_accounts SET balance_nano = balance_nano + ? WHERE id = ? "  # noqa: S608
    f"RETURNING {ACCOUNT_COLUMNS}"
)
SET_DISABLED = f"UPDATE ledger_accounts SET disabled = ? WHERE id = ? RETURNING {ACCOUNT_COLUMNS}"  # noqa: S608
CHARGE = (
    "UPDATE ledger_accounts SET held_nano = held_nano - :held, "  # noqa: S608
    "balance_nano = balance_nano - :charged, "
    f"period_spent_nano = CASE WHEN period_key = {CURRENT_PERIOD} THEN period_spent_nano "
    f"ELSE 0 END + :charged, period_key = {CURRENT_PERIOD} WHERE id = :id"
)
INSERT_USAGE = (
    f"INSERT INTO ledger_usage ({USAGE_INSERT_COLUMNS}) "  # noqa: S608
    f"VALUES ({', '.join('?' * (USAGE_INSERT_COLUMNS.count(',') + 1))}) "
    "ON CONFLICT (request_id) DO NOTHING"
)
SELECT_USAGE = f"SELECT {USAGE_COLUMNS} FROM ledger_usage"  # noqa: S608
INSERT_PROOF = (
    "INSERT INTO ledger_receipt_proofs (request_id, proof, created_at) VALUES (?, ?, ?) "
    "ON CONFLICT (request_id) DO NOTHING"
)
# A proof that came after all makes an "unrooted" record valid again; one with a proof is
# never flagged.
REVIVE = (
    "UPDATE ledger_usage SET receipt_status = 'valid' "
    "WHERE request_id = ? AND receipt_status = 'unrooted'"
)
FLAG_UNROOTED = (
    "UPDATE ledger_usage SET receipt_status = 'unrooted' "
    "WHERE request_id = ? AND receipt_status = 'valid' AND NOT EXISTS "
    "(SELECT 1 FROM ledger_receipt_proofs p WHERE p.request_id = ledger_usage.request_id)"
)
SETTLEMENT = (
    "SELECT u.pool, a.currency, count(*), sum(u.input_tokens), sum(u.output_tokens), "  # noqa: S608
    "sum(u.charged_nano), "
    f"sum(u.receipt_status IN ({', '.join('?' * len(FLAGGED_RECEIPTS))})), "
    f"sum(u.capped), sum(max(u.charged_nano, {CLAIMED})) "
    "FROM ledger_usage u JOIN ledger_accounts a ON a.id = u.account_id "
    "WHERE u.created_at >= ? AND u.created_at < ? GROUP BY u.pool, a.currency "
    "ORDER BY u.pool, a.currency"
)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing, and add the columns an older file lacks (see the docstring)."""
    for statement in filter(str.strip, SCHEMA.split(";")):
        conn.execute(statement)
    for table, column, definition in ADDED_COLUMNS:
        if column not in _columns(conn, table):
            log.info("ledger upgrade: adding %s.%s", table, column)
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def insert_account(
    conn: sqlite3.Connection, account: Account, key_hash: str, now: datetime
) -> Account:
    conn.execute(
        "INSERT INTO ledger_accounts (id, name, key_hash, key_prefix, currency, balance_nano, "
        "spend_limit_nano, spend_period, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (account.id, account.name, key_hash, account.key_prefix, account.currency,
         account.balance_nano, account.spend_limit_nano, account.spend_period, to_us(now)),
    )  # fmt: skip
    return account


def insert_account_if_absent(
    conn: sqlite3.Connection, account: Account, key_hash: str, now: datetime
) -> bool:
    cursor = conn.execute(
        "INSERT INTO ledger_accounts (id, name, key_hash, key_prefix, currency, balance_nano, "
        "spend_limit_nano, spend_period, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (key_hash) DO NOTHING",
        (account.id, account.name, key_hash, account.key_prefix, account.currency,
         account.balance_nano, account.spend_limit_nano, account.spend_period, to_us(now)),
    )  # fmt: skip
    return cursor.rowcount == 1


def account_by_key_hash(conn: sqlite3.Connection, key_hash: str) -> Account | None:
    row = conn.execute(
        f"{SELECT_ACCOUNT} WHERE key_hash = ? AND NOT disabled", (key_hash,)
    ).fetchone()
    return None if row is None else account_from_row(row)


def account_by_id(conn: sqlite3.Connection, account_id: str) -> Account | None:
    row = conn.execute(f"{SELECT_ACCOUNT} WHERE id = ?", (account_id,)).fetchone()
    return None if row is None else account_from_row(row)


def add_credit(conn: sqlite3.Connection, account_id: str, amount_nano: int) -> Account:
    return _updated(conn.execute(ADD_CREDIT, (amount_nano, account_id)), account_id)


def set_disabled(conn: sqlite3.Connection, account_id: str, disabled: bool) -> Account:
    return _updated(conn.execute(SET_DISABLED, (disabled, account_id)), account_id)


def _updated(cursor: sqlite3.Cursor, account_id: str) -> Account:
    row = cursor.fetchone()
    if row is None:
        raise UnknownAccount(account_id)
    return account_from_row(row)


def standing(conn: sqlite3.Connection, account_id: str) -> Standing | None:
    row = conn.execute(
        "SELECT id, balance_nano, held_nano, spend_limit_nano, spend_period, period_key, "
        "period_spent_nano, disabled FROM ledger_accounts WHERE id = ?",
        (account_id,),
    ).fetchone()
    if row is None:
        return None
    account, balance, held, limit, period, key, spent, disabled = row
    return Standing(account, balance, held, limit, period, key, spent, bool(disabled))


def reserve(conn: sqlite3.Connection, hold: Hold, now: datetime) -> Hold:
    """Grant `hold` if the account allows it now (we hold the write lock: read, decide, write)."""
    state = standing(conn, hold.account_id)
    if state is None:
        raise UnknownAccount(hold.account_id)
    if (refused := refusal(state, hold.amount_nano, now)) is not None:
        raise refused
    conn.execute(
        "UPDATE ledger_accounts SET held_nano = held_nano + ? WHERE id = ?",
        (hold.amount_nano, hold.account_id),
    )
    conn.execute(
        "INSERT INTO ledger_holds (id, account_id, amount_nano, request_id, expires_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (hold.id, hold.account_id, hold.amount_nano, hold.request_id, to_us(hold.expires_at)),
    )
    return hold


def _take_hold(conn: sqlite3.Connection, hold_id: str) -> tuple[str, int] | None:
    row = conn.execute(
        "DELETE FROM ledger_holds WHERE id = ? RETURNING account_id, amount_nano", (hold_id,)
    ).fetchone()
    return None if row is None else (row[0], int(row[1]))


def _charge(
    conn: sqlite3.Connection, account_id: str, held: int, charged: int, now: datetime
) -> None:
    """Replace `held` by `charged` and count the charge in the account's current period."""
    conn.execute(
        CHARGE,
        {"held": held, "charged": charged, "id": account_id, **period_keys(now)},
    )  # fmt: skip


def _insert_usage(conn: sqlite3.Connection, hold_id: str, record: UsageRecord) -> bool:
    return conn.execute(INSERT_USAGE, usage_values(hold_id, record, to_us)).rowcount == 1


def settle(
    conn: sqlite3.Connection, hold_id: str, record: UsageRecord, now: datetime
) -> UsageRecord:
    """Turn the hold into a charge of min(cost, hold) and record the usage; once per request."""
    taken = _take_hold(conn, hold_id)
    if taken is None:  # settled, released or reaped already: never charge without a hold
        return _settle_unheld(conn, hold_id, record)
    account_id, held = taken
    charged = min(record.cost_nano, held)
    settled = record.charged(charged, record.claimed > charged)
    if not _insert_usage(conn, hold_id, settled):  # this request was settled on another hold
        _charge(conn, account_id, held, 0, now)
        return usage(conn, record.request_id) or settled
    _charge(conn, account_id, held, charged, now)
    return settled


def _settle_unheld(conn: sqlite3.Connection, hold_id: str, record: UsageRecord) -> UsageRecord:
    existing = usage(conn, record.request_id)
    if existing is not None:
        return existing
    log.warning(
        "request %s settled after its hold was gone: recorded, not charged", record.request_id
    )
    unpaid = record.charged(0, record.claimed > 0)
    _insert_usage(conn, hold_id, unpaid)
    return unpaid


def renew(conn: sqlite3.Connection, hold_id: str, expires_at: datetime) -> bool:
    """Move a hold's expiry (never earlier); whether the hold is still there."""
    cursor = conn.execute(
        "UPDATE ledger_holds SET expires_at = max(expires_at, ?) WHERE id = ?",
        (to_us(expires_at), hold_id),
    )
    return cursor.rowcount == 1


def release(conn: sqlite3.Connection, hold_id: str) -> None:
    taken = _take_hold(conn, hold_id)
    if taken is not None:
        account_id, held = taken
        conn.execute(
            "UPDATE ledger_accounts SET held_nano = held_nano - ? WHERE id = ?", (held, account_id)
        )


def reap(conn: sqlite3.Connection, now: datetime) -> int:
    """Release every hold that expired before `now`."""
    rows = conn.execute(
        "DELETE FROM ledger_holds WHERE expires_at < ? RETURNING account_id, amount_nano",
        (to_us(now),),
    ).fetchall()
    totals: Counter[str] = Counter()
    for account_id, amount in rows:
        totals[account_id] += amount
    conn.executemany(
        "UPDATE ledger_accounts SET held_nano = held_nano - ? WHERE id = ?",
        [(amount, account_id) for account_id, amount in sorted(totals.items())],
    )
    return len(rows)


def usage(conn: sqlite3.Connection, request_id: str) -> UsageRecord | None:
    row = conn.execute(f"{SELECT_USAGE} WHERE request_id = ?", (request_id,)).fetchone()
    return None if row is None else usage_from_row(row, from_us)


def usage_between(
    conn: sqlite3.Connection, start: datetime, end: datetime, limit: int
) -> list[UsageRecord]:
    rows = conn.execute(
        f"{SELECT_USAGE} WHERE created_at >= ? AND created_at < ? "
        "ORDER BY created_at, request_id LIMIT ?",
        (to_us(start), to_us(end), limit),
    ).fetchall()
    return [usage_from_row(row, from_us) for row in rows]


def settlement(conn: sqlite3.Connection, start: datetime, end: datetime) -> list[SettlementRow]:
    rows = conn.execute(SETTLEMENT, (*FLAGGED_RECEIPTS, to_us(start), to_us(end))).fetchall()
    return [settlement_from_row(row, start, end) for row in rows]


def store_receipt_proofs(
    conn: sqlite3.Connection, proofs: list[tuple[str, str]], now: datetime
) -> int:
    """Keep each request's first proof; returns how many were new."""
    stored = conn.executemany(INSERT_PROOF, [(rid, proof, to_us(now)) for rid, proof in proofs])
    count = stored.rowcount
    conn.executemany(REVIVE, [(rid,) for rid, _ in proofs])
    return count


def receipt_proof(conn: sqlite3.Connection, request_id: str) -> str | None:
    row = conn.execute(
        "SELECT proof FROM ledger_receipt_proofs WHERE request_id = ?", (request_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def flag_unrooted(conn: sqlite3.Connection, request_ids: list[str]) -> int:
    return conn.executemany(FLAG_UNROOTED, [(rid,) for rid in request_ids]).rowcount
