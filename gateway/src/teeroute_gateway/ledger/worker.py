"""Threads that run database operations off the event loop, many per transaction.

Both backends submit operations here; the gateway's event loop never blocks on a database.
Each thread owns one Session (a connection) and takes whatever is queued when it becomes free
— up to about MAX_BATCH operations — for the session to run together, typically in one
transaction (one commit for the lot: group commit). While a batch runs the next one queues
up, so batches grow with the load and a lone request is not delayed by any timer. (Lingering
for fuller batches under load was measured and not kept: it saved little CPU here, for
milliseconds of latency per reserve.) Operations submitted in one turn of the event loop reach
the threads together, at the end of the turn, and a batch's futures are resolved with one
`call_soon_threadsafe` per event loop: one wake-up each way per batch, not per operation.

Threads rather than an async driver: the drivers' blocking calls wait in C with the GIL
released, which costs the loop's core less per statement than asyncio's readiness callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .errors import LedgerError

T = TypeVar("T")
O_contra = TypeVar("O_contra", contravariant=True)
MAX_BATCH = 256
log = logging.getLogger(__name__)

Outcome = tuple[bool, Any]  # (succeeded, the result or the exception to raise)


class Session(Protocol[O_contra]):
    """One connection's worth of work: runs a batch of operations, one outcome each."""

    def run(self, operations: Sequence[O_contra]) -> list[Outcome]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Job(Generic[T]):
    operation: T
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


_STOP = object()


class Worker(Generic[T]):
    """Runs submitted operations on its sessions, one thread per session."""

    def __init__(self, sessions: Sequence[Session[T]], name: str) -> None:
        self._queue: queue.SimpleQueue[list[_Job[T]] | object] = queue.SimpleQueue()
        # Jobs submitted during the current turn of each event loop, handed to the threads
        # together at its end: one thread wake-up per turn rather than one per operation.
        self._pending: dict[asyncio.AbstractEventLoop, list[_Job[T]]] = {}
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._serve, args=(s,), name=f"{name}-{n}", daemon=True)
            for n, s in enumerate(sessions)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, operation: T) -> asyncio.Future[Any]:
        """Queue `operation`; its outcome resolves the returned future."""
        if self._stopping:
            raise LedgerError("the ledger is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if loop not in self._pending:
            self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        self._pending[loop].append(_Job(operation, loop, future))
        return future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs = self._pending.pop(loop, None)
        if jobs:
            self._queue.put(jobs)

    async def stop(self) -> None:
        """Run what was submitted, then close the sessions and end the threads."""
        if not self._stopping:
            self._stopping = True
            for loop in list(self._pending):
                self._hand_over(loop)
            for _ in self._threads:
                self._queue.put(_STOP)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)

    def _serve(self, session: Session[T]) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                try:
                    outcomes = session.run([job.operation for job in batch])
                except Exception as error:  # a bug: fail the batch, never strand its callers
                    log.exception("ledger batch failed")
                    outcomes = [(False, LedgerError(f"ledger failure: {error}"))] * len(batch)
                _deliver(batch, outcomes)
        finally:
            session.close()

    def _next_batch(self) -> list[_Job[T]] | None:
        """Blocks for the first jobs, then takes what else is queued (up to about MAX_BATCH).
        None at the stop marker."""
        first = self._queue.get()
        if not isinstance(first, list):
            return None
        batch = list(first)
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, list):
                self._queue.put(item)  # the stop marker: this thread stops after the batch
                break
            batch.extend(item)
        return batch


def _deliver(batch: list[_Job[T]], outcomes: list[Outcome]) -> None:
    by_loop: defaultdict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]]
    by_loop = defaultdict(list)
    for job, outcome in zip(batch, outcomes, strict=True):
        by_loop[job.loop].append((job.future, outcome))
    for loop, resolved in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, resolved)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.debug("dropped %d ledger results for a closed event loop", len(resolved))


def _resolve(resolved: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, (succeeded, value) in resolved:
        if future.done():  # cancelled by its caller
            continue
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)
