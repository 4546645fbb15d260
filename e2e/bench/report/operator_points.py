"""Operator convergence against MinerPool count, found in `operator-scale.json`.

`e2e/bench/operatorscale.py` records `convergence.progress`: [seconds since the first
apply, pools converged, endpoints attested] every few seconds. Failing that, any list of
objects that carry a pool count and the seconds they took, under the names below, is read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

POOL_KEYS = ("pools", "pool_count", "minerpools")
SECOND_KEYS = ("converge_s", "converged_s", "convergence_s", "seconds_to_converge", "seconds")


def convergence(data: Mapping[str, Any]) -> list[tuple[float, float]]:
    """(pools converged, seconds), sorted by pool count."""
    progress = _progress(data.get("convergence"))
    if progress:
        return progress
    for found in _lists(data):
        points = [p for p in (_point(v) for v in found) if p is not None]
        if points:
            return sorted(points)
    return []


def _progress(convergence: object) -> list[tuple[float, float]]:
    if not isinstance(convergence, Mapping) or not isinstance(convergence.get("progress"), list):
        return []
    points = []
    for entry in convergence["progress"]:
        if isinstance(entry, list) and len(entry) >= 2 and all(_real(v) for v in entry[:2]):
            points.append((float(entry[1]), float(entry[0])))
    return sorted(points)


def _real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _lists(value: object) -> Iterator[list[Any]]:
    if isinstance(value, list):
        yield value
        for item in value:
            yield from _lists(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _lists(item)


def _point(value: object) -> tuple[float, float] | None:
    if not isinstance(value, Mapping):
        return None
    pools = _first_number(value, POOL_KEYS)
    seconds = _first_number(value, SECOND_KEYS)
    return None if pools is None or seconds is None else (pools, seconds)


def _first_number(value: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        number = value.get(key)
        if isinstance(number, int | float) and not isinstance(number, bool):
            return float(number)
    return None
