"""Nano-unit conversion, API key format and hashing, and the reserve decision: pure logic."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from teeroute_gateway.ledger import (
    BudgetExceeded,
    InsufficientCredit,
    UnknownAccount,
    from_nano,
    hash_key,
    open_ledger,
    to_nano,
)
from teeroute_gateway.ledger.keys import new_key
from teeroute_gateway.ledger.periods import Standing, period_end, refusal, retry_after_s


@pytest.mark.parametrize(
    ("amount", "nano"),
    [
        ("0", 0),
        ("1", 1_000_000_000),
        ("0.05", 50_000_000),
        ("0.000000001", 1),
        ("12.345678901", 12_345_678_901),
        ("1.5000000000000", 1_500_000_000),  # trailing zeros past the 9th decimal: still exact
        (Decimal("2.25"), 2_250_000_000),
        ("1E+3", 1_000_000_000_000),
        ("-0", 0),
    ],
)
def test_to_nano_is_exact(amount: Decimal | str, nano: int) -> None:
    assert to_nano(amount) == nano
    assert from_nano(nano) == Decimal(amount)


@pytest.mark.parametrize(
    "amount", ["0.0000000001", "-1", "-0.5", "abc", "", "NaN", "Infinity", 1.5, 3]
)
def test_to_nano_refuses_what_is_not_an_exact_non_negative_amount(amount: object) -> None:
    with pytest.raises(ValueError):
        to_nano(amount)  # type: ignore[arg-type]


def test_from_nano_is_exact_for_large_amounts() -> None:
    assert from_nano(123_456_789_012_345_678_9) == Decimal("1234567890.123456789")
    assert str(from_nano(1)) == "1E-9"


def test_keys_are_tr_and_43_url_safe_characters_and_hash_to_hex_sha256() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert re.fullmatch(r"tr-[A-Za-z0-9_-]{43}", key)
    # SHA-256 of the UTF-8 key, in hex (`printf tr-abc | sha256sum`)
    assert hash_key("tr-abc") == "adf059bcdaa3498df04e3e12d23be712e3c605c979444bd5804a414dc86aecb5"


@pytest.mark.parametrize(
    ("period", "now", "end"),
    [
        ("day", datetime(2025, 6, 15, 12, 0, tzinfo=UTC), datetime(2025, 6, 16, tzinfo=UTC)),
        ("day", datetime(2025, 12, 31, 23, 59, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
        ("month", datetime(2025, 6, 15, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)),
        ("month", datetime(2025, 12, 5, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_periods_end_at_the_next_utc_day_or_month(
    period: str, now: datetime, end: datetime
) -> None:
    assert period_end(period, now) == end  # type: ignore[arg-type]
    assert retry_after_s(period, now) == int((end - now).total_seconds())  # type: ignore[arg-type]


NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


def standing(**fields: object) -> Standing:
    values: dict[str, object] = {
        "account_id": "acct_1",
        "balance_nano": 1_000,
        "held_nano": 0,
        "spend_limit_nano": None,
        "spend_period": None,
        "period_key": "",
        "period_spent_nano": 0,
        "disabled": False,
    }
    values.update(fields)
    return Standing(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "amount", "refused"),
    [
        ({}, 1_000, None),
        ({}, 1_001, InsufficientCredit),
        ({"held_nano": 600}, 500, InsufficientCredit),
        ({"disabled": True}, 1, UnknownAccount),
        ({"spend_limit_nano": 500, "spend_period": "day"}, 500, None),
        ({"spend_limit_nano": 500, "spend_period": "day"}, 501, BudgetExceeded),
        ({"spend_limit_nano": 500, "spend_period": "day", "held_nano": 100}, 401, BudgetExceeded),
        # spend settled today counts; spend settled on an earlier day does not
        (
            {"spend_limit_nano": 500, "spend_period": "day", "period_key": "2025-06-15",
             "period_spent_nano": 400},
            101,
            BudgetExceeded,
        ),
        (
            {"spend_limit_nano": 500, "spend_period": "day", "period_key": "2025-06-14",
             "period_spent_nano": 400},
            500,
            None,
        ),
        # out of credit and over the limit: credit wins, waiting would not help
        ({"spend_limit_nano": 10, "spend_period": "month"}, 2_000, InsufficientCredit),
    ],
)  # fmt: skip
def test_refusal(fields: dict[str, object], amount: int, refused: type | None) -> None:
    reason = refusal(standing(**fields), amount, NOW)
    assert type(reason) is refused if refused else reason is None


def test_budget_exceeded_says_when_to_retry() -> None:
    reason = refusal(standing(spend_limit_nano=10, spend_period="day"), 11, NOW)
    assert isinstance(reason, BudgetExceeded)
    assert (reason.limit_nano, reason.spent_nano, reason.period) == (10, 0, "day")
    assert reason.retry_after_s == 12 * 3600


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://relative.db", "sqlite:///", "ledger.db"])
def test_open_ledger_refuses_unknown_urls_naming_the_accepted_ones(url: str) -> None:
    with pytest.raises(ValueError, match=r"sqlite:///.*postgresql://"):
        open_ledger(url)
