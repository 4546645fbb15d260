"""The replay guard: a sealed request is taken only near the time it says it was sealed, and
only once, however the enclave's clock moves."""

from __future__ import annotations

import os
import threading

import pytest

from teeroute_enclave.replay import Refused, ReplayGuard

NOW = 1_800_000_000
WINDOW = 300


def refusal(call: object, *args: object) -> tuple[int, str, str]:
    with pytest.raises(Refused) as found:
        call(*args)  # type: ignore[operator]
    return found.value.status, found.value.kind, found.value.message


def test_a_fresh_request_is_taken_once() -> None:
    guard = ReplayGuard(WINDOW)
    enc = os.urandom(32)
    assert guard.check_time(NOW - 5, NOW) == NOW - 5
    guard.remember(enc, NOW - 5, NOW)
    status, kind, message = refusal(guard.remember, enc, NOW - 5, NOW + 1)
    assert (status, kind) == (409, "sealed_request_replayed")
    assert message.startswith("meta.sealed_at")
    guard.remember(os.urandom(32), NOW - 5, NOW + 1)  # another request of the same second
    assert len(guard) == 2


@pytest.mark.parametrize("value", [None, "1800000000", 1.8e9, True, -1, [NOW]])
def test_sealed_at_must_be_whole_seconds(value: object) -> None:
    status, kind, message = refusal(ReplayGuard(WINDOW).check_time, value, NOW)
    assert (status, kind) == (400, "sealed_envelope_invalid")
    assert message.startswith("meta.sealed_at")


@pytest.mark.parametrize(
    ("sealed_at", "taken"),
    [
        (NOW - WINDOW, True),
        (NOW - WINDOW - 1, False),
        (NOW + WINDOW, True),
        (NOW + WINDOW + 1, False),
    ],
)
def test_the_window_reaches_as_far_either_way(sealed_at: int, taken: bool) -> None:
    guard = ReplayGuard(WINDOW)
    if taken:
        guard.check_time(sealed_at, NOW)
        guard.remember(os.urandom(32), sealed_at, NOW)
        return
    status, kind, message = refusal(guard.check_time, sealed_at, NOW)
    assert (status, kind) == (400, "sealed_request_stale")
    assert message.startswith("meta.sealed_at: ")
    assert ("behind" if sealed_at < NOW else "ahead of") in message


def test_a_request_is_forgotten_only_once_it_can_no_longer_pass() -> None:
    guard = ReplayGuard(WINDOW)
    enc = os.urandom(32)
    guard.remember(enc, NOW, NOW)
    guard.remember(os.urandom(32), NOW + 1, NOW + WINDOW)  # moves the clock on
    assert len(guard) == 2
    status, kind, _ = refusal(guard.remember, enc, NOW, NOW + WINDOW)
    assert (status, kind) == (409, "sealed_request_replayed")
    guard.remember(os.urandom(32), NOW + 2, NOW + WINDOW + 1)
    assert len(guard) == 2  # the first is forgotten: from now on it is refused as stale
    status, kind, _ = refusal(guard.check_time, NOW, NOW + WINDOW + 1)
    assert (status, kind) == (400, "sealed_request_stale")


def test_setting_the_clock_back_revives_nothing_forgotten() -> None:
    guard = ReplayGuard(WINDOW)
    enc = os.urandom(32)
    guard.remember(enc, NOW, NOW)
    guard.remember(os.urandom(32), NOW + 1000, NOW + 1000)  # the host moves the clock on...
    assert len(guard) == 1
    # ...and back: the old request fits the clock again, but the guard's horizon stays
    status, kind, _ = refusal(guard.check_time, NOW, NOW)
    assert (status, kind) == (400, "sealed_request_stale")
    status, kind, _ = refusal(guard.remember, enc, NOW, NOW)
    assert (status, kind) == (400, "sealed_request_stale")


def test_a_full_guard_refuses_rather_than_forgets() -> None:
    guard = ReplayGuard(WINDOW, capacity=2)
    guard.remember(os.urandom(32), NOW, NOW)
    guard.remember(os.urandom(32), NOW, NOW)
    status, kind, _ = refusal(guard.remember, os.urandom(32), NOW, NOW)
    assert (status, kind) == (503, "replay_cache_full")
    guard.remember(os.urandom(32), NOW + WINDOW + 1, NOW + WINDOW + 1)  # room again
    assert len(guard) == 1


def test_two_copies_racing_are_taken_once() -> None:
    guard = ReplayGuard(WINDOW)
    enc, outcomes = os.urandom(32), []
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        try:
            guard.remember(enc, NOW, NOW)
            outcomes.append("taken")
        except Refused as exc:
            outcomes.append(exc.kind)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["sealed_request_replayed"] * 7 + ["taken"]


def test_the_window_and_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ReplayGuard(0)
    with pytest.raises(ValueError):
        ReplayGuard(WINDOW, capacity=0)
