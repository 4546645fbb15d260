"""Which EndpointSlice of a pool lists which endpoint (pure), as Kubernetes' EndpointSlice
controller does: at most SHARD_SIZE endpoints per slice, and a stable assignment.

An endpoint stays in the slice that lists it now for as long as it is listed, so one endpoint
joining or leaving rewrites one slice, not all of them. New endpoints fill the lowest-numbered
slices that have room (the holes others left), then new slices. Slice 0 always exists (empty
when nothing is admitted: the pool's placeholder); any other slice is deleted once empty.
No rebalancing: slices may run below capacity after churn, as the controller's do, in
exchange for not rewriting the ones that did not change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

SHARD_SIZE = 100
"""Endpoints per slice: the EndpointSlice controller's default (--max-endpoints-per-slice)."""


def current_shards(listed: Mapping[int, Iterable[str]]) -> dict[str, int]:
    """Endpoint -> the slice that lists it now (an endpoint found in several: the lowest)."""
    found: dict[str, int] = {}
    for shard in sorted(listed):
        for endpoint in listed[shard]:
            found.setdefault(endpoint, shard)
    return found


def assign(
    wanted: Iterable[str], listed: Mapping[int, Iterable[str]], size: int = SHARD_SIZE
) -> dict[int, list[str]]:
    """Slice number -> the endpoints it should list (sorted), for the endpoints `wanted`,
    given what each slice lists now (`listed`). Slice 0 is always in the answer."""
    if size < 1:
        raise ValueError("a slice holds at least one endpoint")
    where = current_shards(listed)
    shards: dict[int, list[str]] = {0: []}
    newcomers = []
    for endpoint in sorted(set(wanted)):
        shard = where.get(endpoint)
        if shard is not None and len(shards.setdefault(shard, [])) < size:
            shards[shard].append(endpoint)
        else:
            newcomers.append(endpoint)
    shard = 0
    for endpoint in newcomers:
        while len(shards.setdefault(shard, [])) >= size:
            shard += 1
        shards[shard].append(endpoint)
    return {n: sorted(e) for n, e in sorted(shards.items()) if e or n == 0}
