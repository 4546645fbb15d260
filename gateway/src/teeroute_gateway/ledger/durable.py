"""Settling through a short ledger outage (a PostgreSQL restart, a SQLite file locked).

The gateway commits a request's usage record before the answer's last bytes go out
(inference.py), so an answer a client received is always in the ledger, even if the gateway is
killed right after. When the database is out of reach at that moment the settle is tried again,
with growing pauses, for at most `within_s`: settling is idempotent (a repeated settle finds
the first one and charges nothing more), so a try whose reply was lost costs nothing. Past the
bound the caller decides: a whole answer is withheld (503), a stream ends with an error event.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .base import Ledger
from .errors import LedgerError
from .models import Hold, UsageRecord

SETTLE_WITHIN_S = 30.0
"""How long a request waits for the ledger to come back before its answer is given up on:
longer than a PostgreSQL restart or failover takes, short enough for a client's timeout."""
FIRST_PAUSE_S = 0.05
MAX_PAUSE_S = 1.0

log = logging.getLogger(__name__)


async def settle_within(
    ledger: Ledger, hold: Hold, record: UsageRecord, within_s: float = SETTLE_WITHIN_S
) -> UsageRecord | None:
    """The settled record, or None if the ledger stayed unreachable for `within_s`."""
    deadline = time.monotonic() + within_s
    pause = FIRST_PAUSE_S
    while True:
        try:
            return await ledger.settle(hold, record)
        except LedgerError as error:  # settle refuses nothing: this is the database
            if time.monotonic() + pause > deadline:
                log.error("request %s: usage not recorded: %s", record.request_id, error)
                return None
            log.warning("request %s: settling failed (%s); retrying", record.request_id, error)
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE_S)
