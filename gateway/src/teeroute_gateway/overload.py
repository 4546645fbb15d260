"""Load shedding: how many requests one gateway process works on at once, and how many wait.

A gateway that queues every request it is sent grows without bound under overload (memory,
latency) and then answers nothing in time. `Gate` admits at most `max_in_flight` requests per
worker process; up to `max_queued` more wait, in arrival order, at most `queue_timeout_s` for
a slot; every other request is refused at once with 503 `overloaded` and Retry-After, so
clients back off and admitted requests keep their latency. A request takes its slot once its
body is in (`Gate.admitting`), so clients that trickle bodies cannot hold the slots; their
time is bounded by `bodyReadTimeoutS` instead. The app (app.py) passes every request through
a `Gate` except the probes and /openapi.json, which must answer under load. The
decision is the pure `decide`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from teeroute_gateway.asgi import Message, Receive, Scope, header
from teeroute_gateway.errors import Unavailable
from teeroute_gateway.metrics import REFUSED
from teeroute_gateway.settings import GatewaySettings

Decision = Literal["run", "wait", "refuse"]


def overloaded(message: str, retry_after_s: int) -> Unavailable:
    """503 `overloaded`: try again after `retry_after_s`; the connection is closed, since the
    request's body (if any) was not read."""
    return Unavailable(
        message,
        code="overloaded",
        headers={"Retry-After": str(retry_after_s), "Connection": "close"},
    )


def decide(in_flight: int, waiting: int, max_in_flight: int, max_queued: int) -> Decision:
    """What to do with a request arriving now. Nobody overtakes those already waiting."""
    if in_flight < max_in_flight and waiting == 0:
        return "run"
    return "wait" if waiting < max_queued else "refuse"


@dataclass
class Gate:
    max_in_flight: int
    max_queued: int
    queue_timeout_s: float
    retry_after_s: int
    in_flight: int = 0
    _waiting: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Gate:
        return cls(
            settings.max_in_flight,
            settings.max_queued,
            settings.queue_timeout_s,
            settings.overload_retry_after_s,
        )

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the `max_in_flight` slots while the block runs; Unavailable (503
        `overloaded`) when none is free in time."""
        await self._enter()
        try:
            yield
        finally:
            self._leave()

    @contextlib.asynccontextmanager
    async def admitting(self, scope: Scope, receive: Receive) -> AsyncIterator[Receive]:
        """A `receive` for the handler under which the request takes its slot once its body
        is in (a GET, or a request without a body, at once): a client slow to send its body
        holds a connection, never a slot. The slot is freed when the block exits."""
        held = False

        async def enter() -> None:
            nonlocal held
            await self._enter()
            held = True

        async def receive_then_enter() -> Message:
            message = await receive()
            if not held and message["type"] == "http.request" and not message.get("more_body"):
                await enter()
            return message

        if scope["method"] in ("GET", "HEAD") or not _has_body(scope):
            await enter()
        try:
            yield receive_then_enter
        finally:
            if held:
                self._leave()

    async def _enter(self) -> None:
        decision = decide(self.in_flight, len(self._waiting), self.max_in_flight, self.max_queued)
        if decision == "refuse":
            REFUSED["queue_full"].inc()
            raise overloaded("the gateway is at capacity; retry later", self.retry_after_s)
        if decision == "run":
            self.in_flight += 1
        else:
            await self._wait()

    async def _wait(self) -> None:
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(ticket)
        try:
            await asyncio.wait((ticket,), timeout=self.queue_timeout_s)
        except BaseException:  # cancelled while waiting: give back a slot handed over meanwhile
            self._withdraw(ticket)
            raise
        if not ticket.done():
            self._withdraw(ticket)
            REFUSED["queue_timeout"].inc()
            raise overloaded(
                f"no capacity within {self.queue_timeout_s:g} s; retry later", self.retry_after_s
            )

    def load(self) -> tuple[int, int]:
        """(requests in flight, requests waiting), for the metrics."""
        return self.in_flight, len(self._waiting)

    def _withdraw(self, ticket: asyncio.Future[None]) -> None:
        if ticket.done():
            self._leave()  # the slot was ours already: pass it on
        else:
            ticket.cancel()
            self._waiting.remove(ticket)

    def _leave(self) -> None:
        """Hand the slot to the longest waiter, or free it."""
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(None)  # in_flight stays: the slot changes hands
                return
        self.in_flight -= 1


def _has_body(scope: Scope) -> bool:
    length = header(scope, b"content-length")
    return header(scope, b"transfer-encoding") is not None or length not in (None, b"0")
