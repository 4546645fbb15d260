"""Spend-limit periods (UTC calendar days and months) and the reserve decision.

Pure functions, no I/O: both backends ask `refusal` why a hold cannot be granted, so the
rules read the same on SQLite and PostgreSQL. The SQLite backend decides with it inside its
write transaction; the PostgreSQL backend checks the same conditions in one conditional UPDATE
and calls `refusal` only to explain a refused one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .errors import BudgetExceeded, InsufficientCredit, LedgerError, UnknownAccount
from .models import SpendPeriod


def period_key(period: SpendPeriod | None, now: datetime) -> str:
    """Names the period `now` falls in: `2025-06-01` (day), `2025-06` (month), '' (none)."""
    now = now.astimezone(UTC)
    if period == "day":
        return now.strftime("%Y-%m-%d")
    if period == "month":
        return now.strftime("%Y-%m")
    return ""


def period_keys(now: datetime) -> dict[str, str]:
    """Both keys at once, {"day": …, "month": …}, for the database to pick per account."""
    day = now.astimezone(UTC).strftime("%Y-%m-%d")
    return {"day": day, "month": day[:7]}


def period_end(period: SpendPeriod, now: datetime) -> datetime:
    """The instant the period containing `now` rolls over."""
    now = now.astimezone(UTC)
    if period == "day":
        return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def retry_after_s(period: SpendPeriod, now: datetime) -> int:
    """Whole seconds until the period rolls over (at least 1, as Retry-After wants)."""
    return max(1, math.ceil((period_end(period, now) - now).total_seconds()))


@dataclass(frozen=True)
class Standing:
    """An account's state as the reserve decision needs it."""

    account_id: str
    balance_nano: int
    held_nano: int
    spend_limit_nano: int | None
    spend_period: SpendPeriod | None
    period_key: str  # the period period_spent_nano belongs to
    period_spent_nano: int
    disabled: bool

    def spent_in(self, key: str) -> int:
        """Settled spend in period `key` (zero when the stored period is an older one)."""
        return self.period_spent_nano if self.period_key == key else 0


def refusal(standing: Standing, amount_nano: int, now: datetime) -> LedgerError | None:
    """Why a hold of `amount_nano` cannot be granted now, or None if it can.

    Credit is checked first: when both fail, waiting for the next period would not help.
    """
    if standing.disabled:
        return UnknownAccount(standing.account_id)
    available = standing.balance_nano - standing.held_nano
    if available < amount_nano:
        return InsufficientCredit(available, amount_nano)
    limit, period = standing.spend_limit_nano, standing.spend_period
    if limit is None or period is None:
        return None
    spent = standing.spent_in(period_key(period, now)) + standing.held_nano
    if spent + amount_nano > limit:
        return BudgetExceeded(limit, spent, period, retry_after_s(period, now))
    return None
