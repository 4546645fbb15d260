"""Coalescing triggers: many pokes for one key become one run of the work, soon after.

Every MinerPool event used to reconcile every Route of its namespace inside the pool's own
handler: creating 500 pools with 20 Routes per namespace meant 10,000 Route reconciles, each
listing the namespace's pools, and each pool's create handler waited behind its own share.
Now a pool event only pokes its namespace: the Routes there are reconciled once per burst, in
the background, with the pools listed once. Likewise a burst of events of a pool's children
(a rollout changes every pod several times) is one reconcile of the pool.

A poke while the work is waiting to start is absorbed; a poke while it runs schedules exactly
one more run after it (the run may have read the cluster before the change that poked it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)


class Coalescer(Generic[K]):
    def __init__(self, work: Callable[[K], Awaitable[None]], delay_s: float = 0.5) -> None:
        """`work(key)`: what a poke of `key` runs; `delay_s`: how long it waits for more."""
        self._work = work
        self._delay_s = delay_s
        self._pending: set[K] = set()
        self._again: set[K] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def poke(self, key: K) -> None:
        """Ask for a run of `key` (from inside the event loop)."""
        if key in self._pending:
            self._again.add(key)
            return
        self._pending.add(key)
        task = asyncio.get_running_loop().create_task(self._run(key))
        self._tasks.add(task)  # a reference, so the task is not collected mid-run
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: K) -> None:
        try:
            while True:
                await asyncio.sleep(self._delay_s)
                self._again.discard(key)
                try:
                    await self._work(key)
                except Exception:  # the next poke or the periodic resync retries
                    log.exception("coalesced work for %s failed", key)
                if key not in self._again:
                    return
        finally:
            self._pending.discard(key)
            self._again.discard(key)
