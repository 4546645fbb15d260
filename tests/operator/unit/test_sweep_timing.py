"""When the next sweep of a pool comes (pure): at its interval once every endpoint it asks for
is admitted; sooner, backing off, while some are still missing."""

from __future__ import annotations

import datetime as dt

import pytest

from teeroute_operator.sweeper import SweepResult, next_wait

MINUTE = dt.timedelta(seconds=60)


@pytest.mark.parametrize(
    ("pending", "streak", "wait_s"),
    [
        (False, 0, 60),
        (False, 9, 60),
        (True, 0, 1),
        (True, 1, 2),
        (True, 3, 8),
        (True, 6, 60),  # 64 s: capped at the interval
        (True, 10_000, 60),  # a long streak neither overflows nor exceeds the interval
    ],
)
def test_a_pool_still_missing_endpoints_is_swept_again_soon(
    pending: bool, streak: int, wait_s: float
) -> None:
    assert next_wait(SweepResult(3, 1, MINUTE, pending), streak) == wait_s


def test_a_pool_only_short_of_ready_pods_waits_to_be_woken_not_polled() -> None:
    """2 of 5 replicas exist and are admitted: nothing to retry until more pods are ready (their
    events wake the sweeper); the interval is only the fallback."""
    assert next_wait(SweepResult(2, 2, MINUTE, pending=True), 0) == 60


def test_a_short_interval_caps_the_backoff_too() -> None:
    assert next_wait(SweepResult(1, 0, dt.timedelta(seconds=3), pending=True), 5) == 3
