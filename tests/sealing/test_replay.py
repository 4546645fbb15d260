"""The anti-replay window: out of order within the window accepted once, duplicates and
counters fallen out of it refused, `check` never marks."""

from __future__ import annotations

import random

import pytest

from teeroute.sealing.replay import ReplayWindow


@pytest.mark.parametrize(
    ("size", "counters", "accepted"),
    [
        (8, [0, 1, 2], [True, True, True]),
        (8, [0, 0], [True, False]),
        (8, [5, 3, 4, 3, 5], [True, True, True, False, False]),
        (8, [10, 3], [True, True]),  # 7 behind, inside a window of 8
        (8, [10, 2], [True, False]),  # 8 behind: out of it
        (8, [0, 100, 0], [True, True, False]),  # a jump past the window forgets everything
        (8, [100, 93, 93, 92], [True, True, False, False]),
        (8, [-1, 0], [False, True]),
        (4096, [4095, 0, 4096, 0, 1], [True, True, True, False, True]),
    ],
    ids=[
        "in-order",
        "duplicate",
        "out-of-order",
        "edge-inside",
        "edge-outside",
        "jump",
        "old-and-duplicate",
        "negative",
        "full-size",
    ],
)
def test_window_decisions(size: int, counters: list[int], accepted: list[bool]) -> None:
    window = ReplayWindow(size)
    assert [window.check_and_mark(c) for c in counters] == accepted


def test_check_does_not_mark() -> None:
    window = ReplayWindow(16)
    assert window.check(7) and window.check(7)
    assert window.highest == -1
    assert window.check_and_mark(7)
    assert not window.check(7)


def test_too_old_tells_an_old_counter_from_a_duplicate() -> None:
    window = ReplayWindow(16)
    window.check_and_mark(100)
    window.check_and_mark(90)
    assert not window.check(90) and not window.too_old(90)
    assert not window.check(84) and window.too_old(84)


def test_window_agrees_with_a_set_model_on_random_traffic() -> None:
    rng = random.Random(16)
    size = 64
    window, seen, top = ReplayWindow(size), set(), -1
    for _ in range(20_000):
        counter = max(0, top + rng.randint(-80, 6))
        expected = counter not in seen and counter > top - size
        assert window.check_and_mark(counter) is expected, counter
        if expected:
            seen.add(counter)
            top = max(top, counter)


def test_a_window_holds_at_least_one_counter() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ReplayWindow(0)
