"""A pool with no pods yet (every new pool's first sweeps, while its Deployment makes them)
costs no ownership or recovery reads: with nothing to tell apart, the answer is known. 500
pools coming up made ~3 such reads each for nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from teeroute_operator import endpointslice, ownership
from teeroute_operator.leases import LeaseBook

from .test_builders import make


class Unreachable:
    """An apiserver client whose every call fails: the code under test must not call it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"read the apiserver ({name}) with no pods to decide about")


def test_no_pods_are_nobodys_own_without_a_read() -> None:
    assert asyncio.run(ownership.pool_pods(Unreachable(), make(), [])) == []


def test_recovery_with_no_pods_reads_nothing_and_is_done() -> None:
    pool, leases = make(), LeaseBook(None)
    now = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
    asyncio.run(endpointslice.recover(Unreachable(), leases, pool, [], now))  # type: ignore[arg-type]
    assert leases.recovered((pool.metadata.namespace, pool.metadata.name))
