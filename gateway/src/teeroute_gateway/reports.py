"""The settlement report's shape and its period bounds, shared by `GET /v1/settlement` and
`teeroute gateway settlement` so both print the same thing. A row's `flagged` counts the pool's
requests whose usage receipt was missing, invalid or implausible (sealed mode): billed from
the gateway's own counts (or 0 for an invalid receipt); a non-zero count means the miner owes
an explanation. `capped` counts requests charged less than their miner claimed (a claim
above the gateway's count or the held bound), and `underpaid_nano` sums the difference."""

from __future__ import annotations

import datetime as dt
from typing import Any

from teeroute.admission import parse_time
from teeroute_gateway.ledger import SettlementRow
from teeroute_gateway.metering import display

DEFAULT_PERIOD = dt.timedelta(days=30)
OUT_OF_RANGE = "is out of range (years 1-9999 in UTC, and a period that starts in them)"


def period_bound(text: str | None) -> dt.datetime | None:
    """An RFC 3339 time or a date (midnight UTC), in UTC; None when not given. ValueError when
    unreadable or outside years 1-9999 in UTC (callers name the parameter)."""
    if not text:
        return None
    when = parse_time(text if "T" in text else f"{text}T00:00:00Z")
    if when is None:
        raise ValueError("must be an RFC 3339 time or a date (YYYY-MM-DD)")
    try:
        return when.astimezone(dt.UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: the ledger compares in UTC
        raise ValueError(OUT_OF_RANGE) from None


def period(start: str | None, end: str | None) -> tuple[dt.datetime, dt.datetime]:
    """[start, end): end defaults to now, start to 30 days before end."""
    until = period_bound(end) or dt.datetime.now(dt.UTC)
    try:
        return period_bound(start) or until - DEFAULT_PERIOD, until
    except OverflowError:  # end in the first 30 days of year 1
        raise ValueError(OUT_OF_RANGE) from None


def settlement_row(row: SettlementRow) -> dict[str, Any]:
    return {
        "pool": row.pool,
        "from": row.period_start,
        "to": row.period_end,
        "requests": row.requests,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "amount": display(row.amount_nano),
        "amount_nano": row.amount_nano,
        "currency": row.currency,
        "flagged": row.flagged,  # requests with a missing/invalid usage receipt
        "capped": row.capped,  # requests charged less than their miner claimed
        "claimed_nano": row.claimed_nano,
        "underpaid_nano": row.claimed_nano - row.amount_nano,  # claimed but not charged
    }
