"""Keeping a hold from leaking when the request that asked for it is cancelled.

A client that disconnects cancels its request's task, possibly while the reserve is already
queued in the database worker. The reserve still happens; nobody would ever settle or release
that hold, and the account's credit would stay locked until the hold expires. Both backends
await reserves through `hold_or_release`, which hands such an orphaned hold back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .models import Hold

H = TypeVar("H", Hold, Hold | None)
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
