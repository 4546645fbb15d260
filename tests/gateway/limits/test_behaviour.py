"""What a rate limiter promises, table-driven, against the in-process and the Redis limiter.

Each case is a sequence of admits and token recordings at injected times (seconds after
T0, a bucket boundary) with the decision every admit must return. Something counted at t
stays counted until the end of its one-second bucket plus 60 s (window.py), so the waits
below are to those bucket ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from teeroute_gateway.limits import Decision, Limits, RateLimiter

from .conftest import T0, run

A, B = "acct-1|default/chat", "acct-2|default/chat"


@dataclass(frozen=True)
class Admit:
    at: float
    expect: Decision
    scope: str = A


@dataclass(frozen=True)
class Tokens:
    at: float
    tokens: int
    scope: str = A


Step = Admit | Tokens


def ok(limit: int | None, remaining: int | None) -> Decision:
    return Decision(True, "", 0.0, limit, remaining)


def deny(reason: str, retry_after_s: float, limit: int) -> Decision:
    assert reason in ("requests", "tokens")
    return Decision(False, reason, retry_after_s, limit, 0)  # type: ignore[arg-type]


CASES: dict[str, tuple[Limits, list[Step]]] = {
    "rpm is reached exactly at the limit": (
        Limits(rpm=3),
        [
            Admit(0.0, ok(3, 2)),
            Admit(0.25, ok(3, 1)),
            Admit(0.5, ok(3, 0)),
            Admit(0.75, deny("requests", 60.25, 3)),
            Admit(30.0, deny("requests", 31.0, 3)),  # denials are not counted
            Admit(60.75, deny("requests", 0.25, 3)),
            Admit(61.0, ok(3, 2)),
        ],
    ),
    "the window slides bucket by bucket": (
        Limits(rpm=2),
        [
            Admit(0.5, ok(2, 1)),
            Admit(30.25, ok(2, 0)),
            Admit(59.0, deny("requests", 2.0, 2)),
            Admit(61.0, ok(2, 0)),  # the request of bucket 0 left; the one of bucket 30 not
            Admit(61.5, deny("requests", 29.5, 2)),
            Admit(91.0, ok(2, 0)),
        ],
    ),
    "a request counts for 60 to 61 seconds, never less": (
        Limits(rpm=1),
        [
            Admit(0.0, ok(1, 0)),
            Admit(60.0, deny("requests", 1.0, 1)),
            Admit(61.0, ok(1, 0)),
            Admit(121.75, deny("requests", 0.25, 1)),
            Admit(122.0, ok(1, 0)),
        ],
    ),
    "recorded tokens count against tpm": (
        Limits(tpm=100),
        [
            Admit(0.0, ok(100, 100)),
            Tokens(1.0, 60),
            Admit(2.0, ok(100, 40)),
            Tokens(3.0, 50),
            Admit(4.0, deny("tokens", 58.0, 100)),  # when the 60 of bucket 1 leave
            Admit(62.0, ok(100, 50)),
            Admit(64.0, ok(100, 100)),
        ],
    ),
    "one completion over tpm blocks until it leaves": (
        Limits(tpm=100),
        [
            Tokens(0.5, 500),
            Admit(1.0, deny("tokens", 60.0, 100)),
            Admit(61.0, ok(100, 100)),
        ],
    ),
    "both over: the longer wait (tokens) is the answer": (
        Limits(rpm=2, tpm=100),
        [
            Admit(0.0, ok(2, 1)),
            Tokens(0.0, 40),
            Admit(10.0, ok(2, 0)),
            Tokens(10.0, 200),
            Admit(20.0, deny("tokens", 51.0, 100)),
            Admit(61.0, deny("tokens", 10.0, 100)),  # requests are under rpm again
            Admit(71.0, ok(2, 1)),
        ],
    ),
    "both over: the longer wait (requests) is the answer": (
        Limits(rpm=1, tpm=100),
        [
            Tokens(0.0, 99),
            Admit(10.0, ok(1, 0)),
            Tokens(10.0, 1),
            Admit(20.0, deny("requests", 51.0, 1)),
        ],
    ),
    "tpm alone does not count requests": (
        Limits(tpm=10),
        [Admit(0.0, ok(10, 10)), Admit(0.25, ok(10, 10)), Admit(0.5, ok(10, 10))],
    ),
    "rpm alone ignores tokens": (
        Limits(rpm=5),
        [Tokens(0.0, 1000), Admit(0.25, ok(5, 4))],
    ),
    "unlimited is always allowed": (
        Limits(),
        [Tokens(0.0, 10**6), *(Admit(0.25 * i, ok(None, None)) for i in range(5))],
    ),
    "a clock that steps back still counts, in the newest bucket": (
        Limits(rpm=2),
        [
            Admit(10.0, ok(2, 1)),
            Admit(5.0, ok(2, 0)),
            Admit(10.5, deny("requests", 60.5, 2)),
            Admit(71.0, ok(2, 1)),
        ],
    ),
    "scopes are independent": (
        Limits(rpm=1),
        [
            Admit(0.0, ok(1, 0), A),
            Admit(0.25, deny("requests", 60.75, 1), A),
            Admit(0.5, ok(1, 0), B),
            Admit(0.75, deny("requests", 60.25, 1), B),
        ],
    ),
}


async def play(limiter: RateLimiter, limits: Limits, steps: list[Step]) -> list[Decision]:
    decisions = []
    for step in steps:
        if isinstance(step, Tokens):
            await limiter.record_tokens(step.scope, limits, step.tokens, now=T0 + step.at)
        else:
            decisions.append(await limiter.admit(step.scope, limits, now=T0 + step.at))
    return decisions


def assert_same(got: Decision, expected: Decision, at: float) -> None:
    # Redis answers the wait in whole milliseconds, rounded up: still an upper bound.
    assert expected.retry_after_s - 1e-6 <= got.retry_after_s <= expected.retry_after_s + 1e-3, (
        f"at {at}: {got}"
    )
    assert (got.allowed, got.reason, got.limit, got.remaining) == (
        expected.allowed,
        expected.reason,
        expected.limit,
        expected.remaining,
    ), f"at {at}: {got}"


@pytest.mark.parametrize("case", list(CASES))
def test_limiter_behaviour(limiter_url: str, case: str) -> None:
    limits, steps = CASES[case]
    decisions = run(limiter_url, lambda limiter: play(limiter, limits, steps))
    admits = [step for step in steps if isinstance(step, Admit)]
    assert len(decisions) == len(admits)
    for step, got in zip(admits, decisions, strict=True):
        assert_same(got, step.expect, step.at)


def test_a_denied_request_is_admitted_after_retry_after(limiter_url: str) -> None:
    limits = Limits(rpm=5, tpm=1000)

    async def body(limiter: RateLimiter) -> tuple[Decision, Decision, Decision]:
        for i in range(5):
            await limiter.admit(A, limits, now=T0 + 7 * i + 0.3)
            await limiter.record_tokens(A, limits, 150, now=T0 + 7 * i + 0.6)
        denied = await limiter.admit(A, limits, now=T0 + 40.1)
        wait = denied.retry_after_s
        just_before = await limiter.admit(A, limits, now=T0 + 40.1 + wait - 0.01)
        at_retry = await limiter.admit(A, limits, now=T0 + 40.1 + wait)
        return denied, just_before, at_retry

    denied, just_before, at_retry = run(limiter_url, body)
    assert not denied.allowed and denied.reason == "requests"
    assert not just_before.allowed
    assert at_retry.allowed
