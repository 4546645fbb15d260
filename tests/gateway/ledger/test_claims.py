"""What miners claimed against what they were charged, and holds kept alive while a request
runs: on SQLite and PostgreSQL alike (the `ledger` fixture is parametrized over both)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from teeroute_gateway.holds import HoldKeeper
from teeroute_gateway.ledger import Ledger

from .conftest import Clock, usage_record

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("cost", "claimed", "hold", "charged", "capped"),
    [
        (500, 500, 1_000, 500, False),  # believed: charged what was claimed
        (500, 9_000, 1_000, 500, True),  # the bill capped the claim (e.g. 10x our count)
        (0, 700, 1_000, 0, True),  # an invalid receipt: billed 0, the claim shows
        (2_000, 2_000, 1_000, 1_000, True),  # the hold capped the cost
        (500, None, 1_000, 500, False),  # no claim given (an older gateway): the cost
    ],
)
async def test_a_record_is_capped_when_charged_less_than_its_miner_claimed(
    ledger: Ledger, cost: int, claimed: int | None, hold: int, charged: int, capped: bool
) -> None:
    _, account = await ledger.create_key("team-a", 100_000)
    held = await ledger.reserve(account.id, hold, "req-1")
    record = usage_record(account.id, "req-1", cost_nano=cost, claimed_nano=claimed)
    settled = await ledger.settle(held, record)
    assert (settled.charged_nano, settled.capped) == (charged, capped)
    assert await ledger.usage("req-1") == settled


async def test_settlement_shows_how_much_miners_claimed_beyond_what_they_were_paid(
    ledger: Ledger,
) -> None:
    _, account = await ledger.create_key("team-a", 100_000)
    day = datetime(2025, 6, 15, tzinfo=UTC)
    for n, (cost, claimed) in enumerate([(500, 500), (500, 9_000), (300, 300)]):
        held = await ledger.reserve(account.id, 1_000, f"req-{n}")
        record = usage_record(
            account.id, f"req-{n}", pool="pool-a", cost_nano=cost, claimed_nano=claimed,
            created_at=day + timedelta(hours=n), bill_reason="claim_capped" if n == 1 else "",
        )  # fmt: skip
        await ledger.settle(held, record)
    [row] = await ledger.settlement(day, day + timedelta(days=1))
    assert (row.amount_nano, row.capped, row.claimed_nano) == (1_300, 1, 9_800)
    found = await ledger.usage("req-1")
    assert found is not None and (found.bill_reason, found.claimed_nano) == ("claim_capped", 9_000)


async def test_a_renewed_hold_outlives_its_first_expiry_and_is_charged(
    ledger: Ledger, clock: Clock
) -> None:
    _, account = await ledger.create_key("team-a", 10_000)
    held = await ledger.reserve(account.id, 2_000, "req-long", ttl_s=10)
    for _ in range(3):  # a request running 24 s on a 10 s hold, renewed as the gateway does
        clock.advance(seconds=8)
        assert await ledger.renew(held, ttl_s=10)
        assert await ledger.reap() == 0
    settled = await ledger.settle(held, usage_record(account.id, "req-long", cost_nano=1_500))
    assert (settled.charged_nano, settled.capped) == (1_500, False)
    after = await ledger.account(account.id)
    assert after is not None and (after.balance_nano, after.held_nano) == (8_500, 0)


async def test_an_unrenewed_hold_is_reaped_and_a_gone_hold_cannot_be_renewed(
    ledger: Ledger, clock: Clock
) -> None:
    _, account = await ledger.create_key("team-a", 10_000)
    held = await ledger.reserve(account.id, 2_000, "req-lost", ttl_s=10)
    clock.advance(seconds=11)
    assert await ledger.reap() == 1
    assert not await ledger.renew(held, ttl_s=10)
    after = await ledger.account(account.id)
    assert after is not None and after.held_nano == 0


async def test_the_gateways_keeper_renews_the_holds_it_keeps_and_only_those(
    ledger: Ledger, clock: Clock
) -> None:
    _, account = await ledger.create_key("team-a", 10_000)
    kept = await ledger.reserve(account.id, 1_000, "req-running", ttl_s=10)
    dropped = await ledger.reserve(account.id, 1_000, "req-finished", ttl_s=10)
    keeper = HoldKeeper(ledger, ttl_s=10)
    keeper.keep(kept)
    keeper.keep(dropped)
    keeper.drop(dropped)
    try:
        clock.advance(seconds=6)
        await keeper.renew_due(time.monotonic() + 6)  # as its task does a quarter TTL on
        clock.advance(seconds=6)
        assert await ledger.reap() == 1  # the dropped one: it was not renewed
        assert await ledger.renew(kept, ttl_s=10)  # the kept one is still there
    finally:
        keeper.stop()
