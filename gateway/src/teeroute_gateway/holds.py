"""Keeping the credit holds of requests in flight alive (issue 14: a request running past its
hold's TTL had its credit freed by the reaper mid-stream and was then charged 0).

inference.py registers each request's hold (`keep`) and forgets it when it settles (`drop`).
One task per gateway process wakes every quarter of the TTL and renews the holds whose expiry
was set a quarter of the TTL ago or more (so a hold is renewed with half its life left at
worst), so a hold lives as long as its request and only the holds of a
gateway that stopped expire (the reaper frees those). One task instead of one per request:
registering a hold is a dict insert on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time

from teeroute_gateway.ledger import Hold, Ledger

log = logging.getLogger(__name__)


class HoldKeeper:
    def __init__(self, ledger: Ledger, ttl_s: float) -> None:
        self.ledger = ledger
        self.ttl_s = ttl_s
        self._held: dict[str, tuple[Hold, float]] = {}
        """hold id -> (hold, monotonic time its expiry was last set)"""
        self._task: asyncio.Task[None] | None = None

    def keep(self, hold: Hold) -> None:
        self._held[hold.id] = (hold, time.monotonic())
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def drop(self, hold: Hold) -> None:
        self._held.pop(hold.id, None)

    def stop(self) -> None:
        """Stop renewing (shutdown): the holds left expire and are reaped."""
        if self._task is not None:
            self._task.cancel()
        self._held.clear()

    async def _run(self) -> None:
        while self._held:
            await asyncio.sleep(self.ttl_s / 4)
            await self.renew_due(time.monotonic())

    async def renew_due(self, now: float) -> None:
        """Renew every hold whose expiry was set a quarter of the TTL ago or more."""
        due = [hold for hold, at in list(self._held.values()) if now - at >= self.ttl_s / 4]
        results = await asyncio.gather(
            *(self.ledger.renew(hold, self.ttl_s) for hold in due), return_exceptions=True
        )
        for hold, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):  # the ledger is down: the next turn retries
                log.warning("renewing the hold of %s failed: %s", hold.request_id, result)
            elif not result:  # settled or reaped meanwhile
                self._held.pop(hold.id, None)
            elif hold.id in self._held:
                self._held[hold.id] = (hold, now)
