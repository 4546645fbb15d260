"""Columns and row decoding shared by both backends, so an Account or UsageRecord reads back
the same from SQLite and PostgreSQL. Each backend selects these columns in this order; times
come back through a backend-specific `when` (SQLite stores epoch microseconds, PostgreSQL
timestamptz).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from .models import Account, SettlementRow, SpendPeriod, UsageRecord

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ACCOUNT_COLUMNS = (
    "id, name, key_prefix, currency, balance_nano, held_nano, spend_limit_nano, spend_period, "
    "disabled"
)
USAGE_COLUMNS = (
    "request_id, account_id, public_model, pool, endpoint, upstream_model, input_tokens, "
    "output_tokens, input_reported, output_reported, cost_nano, latency_ms, ttft_ms, status, "
    "outcome, streamed, created_at, charged_nano, capped, receipt_status, receipt, "
    "claimed_nano, bill_reason, tpot_ms"
)
# What settle inserts besides the columns above.
USAGE_INSERT_COLUMNS = f"hold_id, {USAGE_COLUMNS}"

Row = Sequence[Any]
ToDatetime = Callable[[Any], datetime]


def account_from_row(row: Row) -> Account:
    return Account(
        id=row[0],
        name=row[1],
        key_prefix=row[2],
        currency=row[3],
        balance_nano=int(row[4]),
        held_nano=int(row[5]),
        spend_limit_nano=None if row[6] is None else int(row[6]),
        spend_period=cast(SpendPeriod | None, row[7]),
        disabled=bool(row[8]),
    )


def usage_from_row(row: Row, when: ToDatetime) -> UsageRecord:
    return UsageRecord(
        request_id=row[0],
        account_id=row[1],
        public_model=row[2],
        pool=row[3],
        endpoint=row[4],
        upstream_model=row[5],
        input_tokens=int(row[6]),
        output_tokens=int(row[7]),
        input_reported=bool(row[8]),
        output_reported=bool(row[9]),
        cost_nano=int(row[10]),
        latency_ms=float(row[11]),
        ttft_ms=None if row[12] is None else float(row[12]),
        status=int(row[13]),
        outcome=row[14],
        streamed=bool(row[15]),
        created_at=when(row[16]),
        charged_nano=int(row[17]),
        capped=bool(row[18]),
        receipt_status=row[19],
        receipt=row[20],
        claimed_nano=None if row[21] is None else int(row[21]),
        bill_reason=row[22],
        tpot_ms=None if row[23] is None else float(row[23]),
    )


def usage_values(
    hold_id: str, record: UsageRecord, when: Callable[[datetime], Any]
) -> tuple[Any, ...]:
    """Parameters for an insert of USAGE_INSERT_COLUMNS."""
    r = record
    return (
        hold_id, r.request_id, r.account_id, r.public_model, r.pool, r.endpoint,
        r.upstream_model, r.input_tokens, r.output_tokens, r.input_reported, r.output_reported,
        r.cost_nano, r.latency_ms, r.ttft_ms, r.status, r.outcome, r.streamed,
        when(r.created_at), r.charged_nano, r.capped, r.receipt_status, r.receipt,
        r.claimed_nano, r.bill_reason, r.tpot_ms,
    )  # fmt: skip


def settlement_from_row(row: Row, start: datetime, end: datetime) -> SettlementRow:
    """Decodes (pool, currency, requests, input_tokens, output_tokens, amount_nano, flagged,
    capped, claimed_nano)."""
    return SettlementRow(
        pool=row[0],
        period_start=start,
        period_end=end,
        requests=int(row[2]),
        input_tokens=int(row[3]),
        output_tokens=int(row[4]),
        amount_nano=int(row[5]),
        currency=row[1],
        flagged=int(row[6]),
        capped=int(row[7] or 0),
        claimed_nano=int(row[8] or 0),
    )


def utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime is refused rather than guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return moment.astimezone(UTC)


def to_us(moment: datetime) -> int:
    """Exact epoch microseconds (SQLite's representation of a time)."""
    return (utc(moment) - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))
