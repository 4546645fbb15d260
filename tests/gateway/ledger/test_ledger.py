"""The ledger's behaviour, on SQLite and on a real PostgreSQL: keys, holds, charges, limits,
expiry, settlement. Each test gets an empty database."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from teeroute_gateway.ledger import (
    BudgetExceeded,
    InsufficientCredit,
    Ledger,
    SettlementRow,
    UnknownAccount,
    hash_key,
    open_ledger,
    to_nano,
)

from .conftest import Clock, query, usage_record

pytestmark = pytest.mark.anyio


async def test_create_key_returns_the_key_once_and_stores_only_its_hash(
    ledger: Ledger, ledger_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key, account = await ledger.create_key("team-a", to_nano("5"))
    assert key.startswith("tr-") and len(key) == 46
    assert (account.name, account.key_prefix, account.currency) == ("team-a", key[:8], "USD")
    assert (account.balance_nano, account.held_nano, account.available_nano) == (
        5 * 10**9,
        0,
        5 * 10**9,
    )

    stored = query(ledger_url, "SELECT * FROM ledger_accounts")
    assert len(stored) == 1
    assert hash_key(key) in stored[0]
    assert not any(key in str(value) for value in stored[0]), "the plaintext key is stored"
    assert key not in caplog.text


async def test_authenticate_finds_enabled_keys_only(ledger: Ledger) -> None:
    key, account = await ledger.create_key("team-a", 1_000)
    assert await ledger.authenticate(key) == account
    assert await ledger.authenticate(key + "x") is None
    assert await ledger.authenticate("tr-" + "A" * 43) is None

    disabled = await ledger.set_disabled(account.id, True)
    assert disabled.disabled
    assert await ledger.authenticate(key) is None
    with pytest.raises(UnknownAccount):
        await ledger.reserve(account.id, 1, "req-1")
    await ledger.set_disabled(account.id, False)
    assert await ledger.authenticate(key) == account


async def test_reserve_settle_and_release_move_credit_between_held_and_spent(
    ledger: Ledger,
) -> None:
    _, account = await ledger.create_key("team-a", 10_000)
    first = await ledger.reserve(account.id, 3_000, "req-1")
    second = await ledger.reserve(account.id, 4_000, "req-2")
    assert (first.account_id, first.amount_nano, first.request_id) == (account.id, 3_000, "req-1")
    assert await _money(ledger, account.id) == (10_000, 7_000)

    settled = await ledger.settle(first, usage_record(account.id, "req-1", cost_nano=1_200))
    assert (settled.charged_nano, settled.capped) == (1_200, False)
    assert await _money(ledger, account.id) == (8_800, 4_000)

    await ledger.release(second)
    assert await _money(ledger, account.id) == (8_800, 0)
    await ledger.release(second)  # releasing again changes nothing
    assert await _money(ledger, account.id) == (8_800, 0)

    topped_up = await ledger.add_credit(account.id, 1_200)
    assert (topped_up.balance_nano, topped_up.available_nano) == (10_000, 10_000)


async def test_reserve_refuses_more_than_the_available_credit(ledger: Ledger) -> None:
    _, account = await ledger.create_key("team-a", 1_000)
    await ledger.reserve(account.id, 600, "req-1")
    with pytest.raises(InsufficientCredit) as refused:
        await ledger.reserve(account.id, 401, "req-2")
    assert (refused.value.available_nano, refused.value.needed_nano) == (400, 401)
    await ledger.reserve(account.id, 400, "req-3")
    assert await _money(ledger, account.id) == (1_000, 1_000)


async def test_unknown_accounts_are_refused(ledger: Ledger) -> None:
    assert await ledger.account("acct_nope") is None
    with pytest.raises(UnknownAccount):
        await ledger.reserve("acct_nope", 1, "req-1")
    with pytest.raises(UnknownAccount):
        await ledger.add_credit("acct_nope", 1)


@pytest.mark.parametrize(
    ("period", "retry_after_s", "next_period"),
    [("day", 12 * 3600, {"hours": 12}), ("month", 15 * 86400 + 12 * 3600, {"days": 16})],
)
async def test_budget_exceeded_until_the_period_rolls_over(
    ledger: Ledger, clock: Clock, period: str, retry_after_s: int, next_period: dict[str, float]
) -> None:
    """Clock: 2025-06-15 12:00 UTC. Limit 1.00 per period, credit 10.00."""
    _, account = await ledger.create_key("capped", to_nano("10"), to_nano("1"), period)
    hold = await ledger.reserve(account.id, to_nano("0.6"), "req-1")
    await ledger.settle(hold, usage_record(account.id, "req-1", cost_nano=to_nano("0.5")))
    await ledger.reserve(account.id, to_nano("0.3"), "req-2")  # 0.5 spent + 0.3 held

    with pytest.raises(BudgetExceeded) as refused:
        await ledger.reserve(account.id, to_nano("0.3"), "req-3")
    exceeded = refused.value
    assert (exceeded.limit_nano, exceeded.spent_nano, exceeded.period) == (
        to_nano("1"), to_nano("0.8"), period
    )  # fmt: skip
    assert exceeded.retry_after_s == retry_after_s

    await ledger.reserve(account.id, to_nano("0.2"), "req-4")  # exactly up to the limit
    clock.advance(**next_period)
    await ledger.reserve(account.id, to_nano("0.4"), "req-5")  # only holds count: 0.5+0.4+0.4


async def test_spend_in_a_past_period_does_not_count(ledger: Ledger, clock: Clock) -> None:
    _, account = await ledger.create_key("capped", 10_000, 1_000, "day")
    hold = await ledger.reserve(account.id, 1_000, "req-1")
    await ledger.settle(hold, usage_record(account.id, "req-1", cost_nano=1_000))
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(account.id, 1, "req-2")
    clock.advance(days=1)
    await ledger.reserve(account.id, 1_000, "req-3")


async def test_a_cost_above_the_hold_is_capped_at_the_hold(ledger: Ledger) -> None:
    _, account = await ledger.create_key("team-a", 10_000)
    hold = await ledger.reserve(account.id, 2_000, "req-1")
    settled = await ledger.settle(hold, usage_record(account.id, "req-1", cost_nano=5_000))
    assert (settled.cost_nano, settled.charged_nano, settled.capped) == (5_000, 2_000, True)
    assert await _money(ledger, account.id) == (8_000, 0)


async def test_settling_twice_charges_once(ledger: Ledger) -> None:
    _, account = await ledger.create_key("team-a", 10_000)
    hold = await ledger.reserve(account.id, 2_000, "req-1")
    record = usage_record(account.id, "req-1", cost_nano=1_500)
    first = await ledger.settle(hold, record)
    again = await ledger.settle(hold, replace(record, cost_nano=1_900))
    assert again == first
    assert await _money(ledger, account.id) == (8_500, 0)


async def test_a_second_hold_for_a_settled_request_is_released_not_charged(
    ledger: Ledger,
) -> None:
    _, account = await ledger.create_key("team-a", 10_000)
    first = await ledger.reserve(account.id, 2_000, "req-1")
    duplicate = await ledger.reserve(account.id, 2_000, "req-1")
    settled = await ledger.settle(first, usage_record(account.id, "req-1", cost_nano=1_000))
    assert await ledger.settle(duplicate, usage_record(account.id, "req-1")) == settled
    assert await _money(ledger, account.id) == (9_000, 0)


async def test_reap_releases_expired_holds_only(ledger: Ledger, clock: Clock) -> None:
    _, account = await ledger.create_key("team-a", 10_000)
    short = await ledger.reserve(account.id, 1_000, "req-1", ttl_s=60)
    await ledger.reserve(account.id, 2_000, "req-2", ttl_s=600)
    assert short.expires_at == clock.now + timedelta(seconds=60)

    assert await ledger.reap() == 0
    assert await ledger.reap(clock.now + timedelta(seconds=61)) == 1
    assert await _money(ledger, account.id) == (10_000, 2_000)
    clock.advance(seconds=601)
    assert await ledger.reap() == 1
    assert await _money(ledger, account.id) == (10_000, 0)

    # The crashed request's settle arrives after all: recorded, but nothing to charge against.
    late = await ledger.settle(short, usage_record(account.id, "req-1", cost_nano=700))
    assert (late.charged_nano, late.capped) == (0, True)
    assert await _money(ledger, account.id) == (10_000, 0)
    assert await ledger.usage("req-1") == late


async def test_usage_is_found_by_request_id_as_settled(ledger: Ledger) -> None:
    _, account = await ledger.create_key("team-a", 10_000)
    hold = await ledger.reserve(account.id, 2_000, "gen-42")
    settled = await ledger.settle(hold, usage_record(account.id, "gen-42", ttft_ms=None))
    assert await ledger.usage("gen-42") == settled
    assert settled.ttft_ms is None and settled.created_at.tzinfo is not None
    assert await ledger.usage("gen-43") is None


async def test_settlement_sums_charges_per_pool_within_the_period(ledger: Ledger) -> None:
    _, account = await ledger.create_key("team-a", 1_000_000)
    day = datetime(2025, 6, 15, tzinfo=UTC)
    requests = [  # (pool, hour of day 15 or 16, input, output, cost, hold)
        ("pool-b", 1, 10, 20, 300, 1_000),
        ("pool-a", 2, 100, 200, 500, 1_000),
        ("pool-a", 23, 1, 2, 2_000, 1_000),  # capped: charged 1_000
        ("pool-a", 24, 5, 5, 50, 1_000),  # the next day: outside the period
    ]
    for n, (pool, hour, tokens_in, tokens_out, cost, amount) in enumerate(requests):
        hold = await ledger.reserve(account.id, amount, f"req-{n}")
        record = usage_record(
            account.id, f"req-{n}", pool=pool, input_tokens=tokens_in, output_tokens=tokens_out,
            cost_nano=cost, created_at=day + timedelta(hours=hour),
        )  # fmt: skip
        await ledger.settle(hold, record)

    end = day + timedelta(days=1)
    assert await ledger.settlement(day, end) == [
        SettlementRow("pool-a", day, end, 2, 101, 202, 1_500, "USD", capped=1, claimed_nano=2_500),
        SettlementRow("pool-b", day, end, 1, 10, 20, 300, "USD", capped=0, claimed_nano=300),
    ]
    records = await ledger.usage_records(day, end)
    assert [record.request_id for record in records] == ["req-0", "req-1", "req-2"]
    assert await ledger.settlement(end + timedelta(days=1), end + timedelta(days=2)) == []


async def test_opening_again_and_concurrently_keeps_the_data(ledger_url: str) -> None:
    first = open_ledger(ledger_url)
    await first.open()
    key, _ = await first.create_key("team-a", 1)
    await first.close()
    ledgers = [open_ledger(ledger_url) for _ in range(3)]
    await asyncio.gather(*(opened.open() for opened in ledgers))
    assert all([await opened.authenticate(key) for opened in ledgers])
    for opened in ledgers:
        await opened.close()


async def test_an_in_memory_sqlite_ledger_works_for_unit_tests() -> None:
    ledger = open_ledger("sqlite:///:memory:")
    await ledger.open()
    key, account = await ledger.create_key("team-a", 1_000)
    hold = await ledger.reserve(account.id, 1_000, "req-1")
    await ledger.settle(hold, usage_record(account.id, "req-1", cost_nano=10))
    assert await ledger.authenticate(key) == replace(account, balance_nano=990)
    await ledger.close()


async def _money(ledger: Ledger, account_id: str) -> tuple[int, int]:
    account = await ledger.account(account_id)
    assert account is not None
    return account.balance_nano, account.held_nano
