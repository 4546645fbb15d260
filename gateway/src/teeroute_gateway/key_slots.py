"""How many requests one API key's account may have in flight in one gateway process.

Without it, one key can take every `maxInFlight` slot of a worker, and every other key waits
or gets 503 `overloaded`. With `maxInFlightPerKey`, its requests past the limit get 429
`concurrency_limit_exceeded` (Retry-After: 1) at once, before any credit is held or any miner
is asked, so the slots it leaves stay free for other keys. Counted per worker process, in
memory (nothing to leak when a process dies): with N workers, a key may have N times the
limit in flight. The decision is the pure `over`.
"""

from __future__ import annotations

from teeroute_gateway.errors import RateLimited
from teeroute_gateway.metrics import REFUSED


def over(in_flight: int, limit: int | None) -> bool:
    """Whether one more request of an account with `in_flight` requests must be refused."""
    return limit is not None and in_flight >= limit


class KeySlots:
    """The requests in flight of each account in this process, each at most `limit`."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def take(self, account_id: str) -> None:
        """One more request of `account_id`, or RateLimited (429) if it has `limit` already.
        Each take that returns must be matched by one `give_back`."""
        if self.limit is None:
            return
        count = self._counts.get(account_id, 0)
        if over(count, self.limit):
            REFUSED["key_concurrency"].inc()
            raise RateLimited(
                f"this API key has {self.limit} requests in flight already (the gateway's "
                "maxInFlightPerKey); retry when one has ended",
                code="concurrency_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        self._counts[account_id] = count + 1

    def give_back(self, account_id: str) -> None:
        if self.limit is None:
            return
        count = self._counts.get(account_id, 0) - 1
        if count > 0:
            self._counts[account_id] = count
        else:
            self._counts.pop(account_id, None)

    def in_flight(self, account_id: str) -> int:
        return self._counts.get(account_id, 0)
