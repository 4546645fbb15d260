"""Operations that outlive a cancelled caller: what happens to their results.

A client that disconnects cancels its request's task, possibly while its reserve or settle is
already queued in a database worker, where it will still run. A reserve granted then would
lock the account's credit until the hold expires, since nobody would settle or release it:
`hold_or_release` hands such an orphaned hold back. A settle or release simply completes
(`completed`); its failure, if any, is logged instead of lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .models import Hold

H = TypeVar("H", Hold, Hold | None)
T = TypeVar("T")
Release = Callable[[Hold], Coroutine[Any, Any, None]]

log = logging.getLogger(__name__)
_background: set[asyncio.Task[None]] = set()


async def hold_or_release(pending: asyncio.Future[H], release: Release) -> H:
    """Await the reserve; if our caller is cancelled first, release the hold once granted."""
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:
        pending.add_done_callback(lambda done: _release_orphan(done, release))
        raise


async def completed(pending: asyncio.Future[T]) -> T:
    """Await an operation that must finish even if our caller is cancelled."""
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:
        pending.add_done_callback(_log_failure)
        raise


def _log_failure(done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("a ledger operation whose caller left failed: %s", done.exception())


def _release_orphan(done: asyncio.Future[H], release: Release) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    hold = done.result()
    if hold is None:
        return
    task = asyncio.ensure_future(release(hold))
    _background.add(task)  # keep a reference until it finishes
    task.add_done_callback(_finished)


def _finished(task: asyncio.Task[None]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not release an orphaned hold: %s", task.exception())
