"""One gateway process in the two-process budget race (run by test_races.py, not collected).

    python race_worker.py URL ACCOUNT_ID REQUESTS COST_NANO

Opens the ledger, prints `ready`, waits for a line on stdin (so both processes start
together), fires REQUESTS concurrent reserve -> settle, and prints a JSON summary. Each request
waits a random 0-200 ms first, as requests arrive over time: otherwise one group commit could
take the whole balance before the other process's first batch, and nothing would interleave.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from datetime import UTC, datetime

from teeroute_gateway.ledger import InsufficientCredit, UsageRecord, open_ledger

SPREAD_S = 0.2


async def one(ledger_url: str, account_id: str, requests: int, cost: int) -> dict[str, int]:
    ledger = open_ledger(ledger_url)
    await ledger.open()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    tag = f"p{id(ledger)}"
    outcomes = await asyncio.gather(
        *(request(ledger, account_id, f"{tag}-{n}", cost) for n in range(requests)),
        return_exceptions=True,
    )
    await ledger.close()
    summary = {"ok": 0, "refused": 0, "other": 0}
    for outcome in outcomes:
        if outcome is None:
            summary["ok"] += 1
        elif isinstance(outcome, InsufficientCredit):
            summary["refused"] += 1
        else:
            summary["other"] += 1
            print(repr(outcome), file=sys.stderr)
    return summary


async def request(ledger: object, account_id: str, request_id: str, cost: int) -> None:
    from teeroute_gateway.ledger import Ledger

    assert isinstance(ledger, Ledger)
    await asyncio.sleep(random.uniform(0, SPREAD_S))  # timing, not secrets
    hold = await ledger.reserve(account_id, cost, request_id)
    record = UsageRecord(
        request_id, account_id, "m", "pool", "e", "m", 1, 1, True, True, cost, 1.0, None, 200,
        "ok", False, datetime.now(UTC),
    )  # fmt: skip
    await ledger.settle(hold, record)


if __name__ == "__main__":
    url, account, count, cost_nano = sys.argv[1:5]
    print(json.dumps(asyncio.run(one(url, account, int(count), int(cost_nano)))), flush=True)
