"""The PostgreSQL ledger's operations: steps for the batch function, statements for the rest.

Hot operations (reserve, settle, release, account lookups) are Steps: a JSON object for
`ledger_v4_run` (see postgres_schema) and a decoder of its result. Administration and
reporting are plain Statements. Both are run by postgres_session; decoders may raise the
exception the caller should get (e.g. InsufficientCredit).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, LiteralString

from .errors import UnknownAccount
from .models import FLAGGED_RECEIPTS, Account, Hold, SettlementRow, UsageRecord
from .periods import Standing, period_keys, refusal
from .postgres_session import Rows, Statement, Step
from .rows import (
    ACCOUNT_COLUMNS,
    USAGE_COLUMNS,
    USAGE_INSERT_COLUMNS,
    account_from_row,
    settlement_from_row,
    usage_from_row,
    usage_values,
)

# Statements are put together from the constant column lists in rows.py, never from input
# (hence the S608 exemptions); every value is a bound parameter.
USAGE_PLACEHOLDERS = ", ".join(["%s"] * (USAGE_INSERT_COLUMNS.count(",") + 1))


def as_utc(moment: Any) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"expected a timestamptz, got {type(moment)}")
    return moment.astimezone(UTC)


def _account_or_none(result: Any) -> Account | None:
    return None if result is None else account_from_row(result)


def account_by_key_hash(key_hash: str) -> Step[Account | None]:
    return Step({"op": "account", "key_hash": key_hash}, _account_or_none)


def account_by_id(account_id: str) -> Step[Account | None]:
    return Step({"op": "account", "account": account_id}, _account_or_none)


def reserve(hold: Hold, now: datetime) -> Step[Hold | None]:
    """Grant `hold` if the balance and the limit allow. The result: the hold; or the reason
    why not, raised; or None when the account as read after the refusal would have allowed
    it (a concurrent release came in between): ask again."""
    step = {"op": "reserve", "account": hold.account_id, "amount": hold.amount_nano,
            "hold": hold.id, "request": hold.request_id, "expires": hold.expires_at,
            **period_keys(now)}  # fmt: skip

    def decode(result: Any) -> Hold | None:
        if result.get("granted"):
            return hold
        if "standing" not in result:
            raise UnknownAccount(hold.account_id)
        if (refused := refusal(Standing(*result["standing"]), hold.amount_nano, now)) is not None:
            raise refused
        return None

    return Step(step, decode, hold.account_id)


def settle(hold: Hold, record: UsageRecord, now: datetime) -> Step[UsageRecord | None]:
    """Charge min(cost, hold) and record the usage; None if the hold is gone or the request
    already recorded (nothing charged: the caller looks up what happened)."""
    step = {"op": "settle", "hold": hold.id, "usage": record, **period_keys(now)}

    def decode(result: Any) -> UsageRecord | None:
        if result is None:
            return None
        return record.charged(result["charged"], result["capped"])

    return Step(step, decode, hold.account_id)


def release(hold_id: str, account_id: str) -> Step[bool]:
    """Drop the hold; whether it was still there."""
    return Step({"op": "release", "hold": hold_id}, bool, account_id)


def insert_account(account: Account, key_hash: str, now: datetime) -> Statement[Account]:
    return Statement(
        "INSERT INTO ledger_accounts (id, name, key_hash, key_prefix, currency, balance_nano, "
        "spend_limit_nano, spend_period, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (account.id, account.name, key_hash, account.key_prefix, account.currency,
         account.balance_nano, account.spend_limit_nano, account.spend_period, now),
        lambda _: account,
    )  # fmt: skip


def insert_account_if_absent(account: Account, key_hash: str, now: datetime) -> Statement[bool]:
    return Statement(
        "INSERT INTO ledger_accounts (id, name, key_hash, key_prefix, currency, balance_nano, "
        "spend_limit_nano, spend_period, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (key_hash) DO NOTHING RETURNING id",
        (account.id, account.name, key_hash, account.key_prefix, account.currency,
         account.balance_nano, account.spend_limit_nano, account.spend_period, now),
        lambda rows: len(rows) == 1,
    )  # fmt: skip


def add_credit(account_id: str, amount_nano: int) -> Statement[Account]:
    sql: LiteralString = (
        "UPDATE ledger_accounts SET balance_nano = balance_nano + %s WHERE id = %s "  # noqa: S608
        f"RETURNING {ACCOUNT_COLUMNS}"
    )
    return Statement(sql, (amount_nano, account_id), _known(account_id))


def set_disabled(account_id: str, disabled: bool) -> Statement[Account]:
    sql: LiteralString = (
        f"UPDATE ledger_accounts SET disabled = %s WHERE id = %s RETURNING {ACCOUNT_COLUMNS}"  # noqa: S608
    )
    return Statement(sql, (disabled, account_id), _known(account_id))


def _known(account_id: str) -> Callable[[Rows], Account]:
    def decode(rows: Rows) -> Account:
        if not rows:
            raise UnknownAccount(account_id)
        return account_from_row(rows[0])

    return decode


def insert_unpaid(hold_id: str, record: UsageRecord) -> Statement[UsageRecord | None]:
    """Record usage whose hold is gone, charging nothing; None if the request is recorded."""
    unpaid = record.charged(0, record.claimed > 0)
    sql: LiteralString = (
        f"INSERT INTO ledger_usage ({USAGE_INSERT_COLUMNS}) VALUES ({USAGE_PLACEHOLDERS}) "  # noqa: S608
        "ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
    )
    values = usage_values(hold_id, unpaid, lambda moment: moment)
    return Statement(sql, values, lambda rows: unpaid if rows else None)


def renew(hold_id: str, expires_at: datetime) -> Statement[bool]:
    sql: LiteralString = (
        "UPDATE ledger_holds SET expires_at = GREATEST(expires_at, %s) WHERE id = %s RETURNING id"
    )
    return Statement(sql, (expires_at, hold_id), lambda rows: bool(rows))


def expired_holds(now: datetime) -> Statement[list[tuple[str, str]]]:
    sql: LiteralString = "SELECT id, account_id FROM ledger_holds WHERE expires_at < %s"
    return Statement(sql, (now,), lambda rows: [(row[0], row[1]) for row in rows])


def usage(request_id: str) -> Statement[UsageRecord | None]:
    sql: LiteralString = f"SELECT {USAGE_COLUMNS} FROM ledger_usage WHERE request_id = %s"  # noqa: S608
    return Statement(sql, (request_id,), lambda rows: _usage_rows(rows)[0] if rows else None)


def usage_between(start: datetime, end: datetime, limit: int) -> Statement[list[UsageRecord]]:
    sql: LiteralString = (
        f"SELECT {USAGE_COLUMNS} FROM ledger_usage WHERE created_at >= %s AND created_at < %s "  # noqa: S608
        "ORDER BY created_at, request_id LIMIT %s"
    )
    return Statement(sql, (start, end, limit), _usage_rows)


def _usage_rows(rows: Rows) -> list[UsageRecord]:
    return [usage_from_row(row, as_utc) for row in rows]


def settlement(start: datetime, end: datetime) -> Statement[list[SettlementRow]]:
    sql: LiteralString = (
        "SELECT u.pool, a.currency, count(*), sum(u.input_tokens), sum(u.output_tokens), "
        "sum(u.charged_nano), count(*) FILTER (WHERE u.receipt_status = ANY(%s)), "
        "count(*) FILTER (WHERE u.capped), "
        "sum(GREATEST(u.charged_nano, COALESCE(u.claimed_nano, u.cost_nano))) "
        "FROM ledger_usage u JOIN ledger_accounts a ON a.id = u.account_id "
        "WHERE u.created_at >= %s AND u.created_at < %s GROUP BY u.pool, a.currency "
        'ORDER BY u.pool COLLATE "C", a.currency'  # byte order, as SQLite and Python sort
    )
    return Statement(
        sql,
        (list(FLAGGED_RECEIPTS), start, end),
        lambda rows: [settlement_from_row(row, start, end) for row in rows],
    )


def store_receipt_proofs(proofs: list[tuple[str, str]], now: datetime) -> Statement[int]:
    """Keep each request's first proof, and make an "unrooted" record whose proof came after
    all "valid" again, in one statement; how many proofs were new."""
    sql: LiteralString = (
        "WITH given AS (SELECT * FROM unnest(%s::text[], %s::text[]) AS g (request_id, proof)), "
        "stored AS (INSERT INTO ledger_receipt_proofs (request_id, proof, created_at) "
        "SELECT request_id, proof, %s FROM given ON CONFLICT (request_id) DO NOTHING "
        "RETURNING request_id), "
        "revived AS (UPDATE ledger_usage SET receipt_status = 'valid' "
        "WHERE receipt_status = 'unrooted' AND request_id IN (SELECT request_id FROM given) "
        "RETURNING request_id) "
        "SELECT count(*) FROM stored"
    )
    ids, texts = [rid for rid, _ in proofs], [proof for _, proof in proofs]
    return Statement(sql, (ids, texts, now), lambda rows: int(rows[0][0]))


def receipt_proof(request_id: str) -> Statement[str | None]:
    sql: LiteralString = "SELECT proof FROM ledger_receipt_proofs WHERE request_id = %s"
    return Statement(sql, (request_id,), lambda rows: str(rows[0][0]) if rows else None)


def flag_unrooted(request_ids: list[str]) -> Statement[int]:
    sql: LiteralString = (
        "UPDATE ledger_usage AS u SET receipt_status = 'unrooted' "
        "WHERE u.request_id = ANY(%s) AND u.receipt_status = 'valid' AND NOT EXISTS "
        "(SELECT 1 FROM ledger_receipt_proofs p WHERE p.request_id = u.request_id) "
        "RETURNING u.request_id"
    )
    return Statement(sql, (request_ids,), len)
