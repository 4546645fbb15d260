"""Every receipt under a signed root, or flagged: the gateway's side of "receipts that cost a
MAC, audited by signatures" (docs/sealed-mode.md, wire v2).

Each gateway session's RootTracker (sessions.py) holds the receipts whose tag checked until a
ROOT frame covers them; ROOT frames come on answers (sealed.Hop) or when asked for here.

    store(proofs)   inclusion proofs of covered receipts -> ledger.store_receipt_proofs, in
                    the background (the answer never waits for the ledger)
    sweep(now)      sessions whose oldest receipt waited the enclaves' S seconds: ask their
                    agent for its roots (POST /v1/sessions/roots, in the session); receipts
                    still not covered S + grace seconds after they came are flagged
                    (ledger.flag_unrooted: receipt_status "unrooted"), once each
    run()           sweep, forever, a few times per S

A session that ended (lease over, endpoint gone, enclave restarted) is asked nothing more:
its receipts are proven by roots still on their way, or flagged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from teeroute.sealing.errors import SealingError
from teeroute.sealing.frames import FrameDecoder, FrameType
from teeroute_gateway.hop_v2 import Post, session_request
from teeroute_gateway.sessions import Pooled, Proofs, SessionGone, SessionPool
from teeroute_gateway.upstream import UpstreamError

log = logging.getLogger(__name__)
ROOTS = "/v1/sessions/roots"
ASK_TIMEOUT_S = 10.0


class RootKeeper:
    def __init__(
        self, ledger: Any, pool: SessionPool, post: Post, grace_s: float, every_s: float
    ) -> None:
        self.ledger = ledger
        self.pool = pool
        self.post = post
        self.grace_s = grace_s
        self.every_s = every_s
        self._writes: set[asyncio.Task[None]] = set()
        self.unrooted: Callable[[int], None] = lambda count: None
        """Counts the receipts flagged (the lifecycle sets it to the metric)."""

    def store(self, proofs: Proofs) -> None:
        task = asyncio.get_running_loop().create_task(self._store(proofs))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _store(self, proofs: Proofs) -> None:
        try:
            await self.ledger.store_receipt_proofs(proofs)
        except Exception:  # the receipts stay flagged-free; their proofs are lost, say so
            log.exception("storing %d receipt proofs failed", len(proofs))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.sweep(time.time())
            except Exception:
                log.exception("checking receipts for signed roots failed; retrying later")

    async def sweep(self, now: float) -> None:
        self.pool.expire(now)
        due = [pooled for pooled in self.pool.sessions() if pooled.tracker.due(now)]
        await asyncio.gather(*(self._ask_in_time(pooled) for pooled in due))
        late: list[str] = []
        for pooled in [*self.pool.sessions(), *self.pool.retired]:
            late += pooled.tracker.overdue(now, self.grace_s)
        self.pool.retired = [p for p in self.pool.retired if p.tracker.pending]
        if late:
            log.warning("%d receipts not covered by a signed root in time: flagged", len(late))
            await self.ledger.flag_unrooted(late)
            self.unrooted(len(late))

    async def _ask_in_time(self, pooled: Pooled) -> None:
        """Every due session is asked at once; one agent that hangs holds up no other."""
        try:
            async with asyncio.timeout(ASK_TIMEOUT_S):
                await self.ask(pooled)
        except TimeoutError:
            log.warning("no signed roots from %s within %s s", pooled.endpoint.key, ASK_TIMEOUT_S)

    async def ask(self, pooled: Pooled) -> None:
        """The agent's pending roots for this session, taken (their proofs stored)."""
        try:
            lowest = pooled.tracker.lowest_pending()
            wanted = b"" if lowest is None else b'{"from_index":%d}' % lowest
            body = await self.post(
                pooled.endpoint, ROOTS.encode(), session_request(pooled, ROOTS, "none", wanted)
            )
            for frame in FrameDecoder().feed(body):
                if frame.type == FrameType.ROOT:
                    signing = pooled.endpoint.signing_key_sha256
                    pooled.proven(pooled.tracker.on_root(frame.payload, signing))
        except SessionGone:  # the enclave restarted: its unsigned batch is gone with it
            self.pool.forget(pooled)
        except (UpstreamError, SealingError) as exc:
            log.warning("no signed roots from %s: %s", pooled.endpoint.key, exc)
