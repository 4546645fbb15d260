"""Nonces are single-use, bound to the endpoint they were sent to, and short-lived."""

from __future__ import annotations

import datetime as dt

import pytest

from teeroute_operator.nonces import NonceBook, NonceRejected

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(seconds=10)


def test_a_nonce_redeems_once_with_its_issue_time() -> None:
    book = NonceBook(TTL)
    nonce = book.issue("pod-a", NOW)
    assert len(nonce) == 32
    assert book.redeem(nonce, "pod-a", NOW + dt.timedelta(seconds=1)) == NOW
    with pytest.raises(NonceRejected, match="already used"):
        book.redeem(nonce, "pod-a", NOW)


def test_a_nonce_sent_to_one_endpoint_cannot_be_answered_by_another() -> None:
    book = NonceBook(TTL)
    nonce = book.issue("pod-a", NOW)
    with pytest.raises(NonceRejected, match="different endpoint"):
        book.redeem(nonce, "pod-b", NOW)


def test_unknown_and_stale_nonces_are_refused() -> None:
    book = NonceBook(TTL)
    with pytest.raises(NonceRejected):
        book.redeem(b"\0" * 32, "pod-a", NOW)
    nonce = book.issue("pod-a", NOW)
    with pytest.raises(NonceRejected, match="older"):
        book.redeem(nonce, "pod-a", NOW + TTL + dt.timedelta(seconds=1))


def test_unanswered_nonces_are_forgotten() -> None:
    book = NonceBook(TTL)
    for i in range(100):
        book.issue(f"pod-{i}", NOW)
    book.issue("late", NOW + TTL * 2)
    assert book.outstanding() == 1


def test_nonces_are_fresh() -> None:
    book = NonceBook(TTL)
    assert len({book.issue("pod-a", NOW) for _ in range(1000)}) == 1000
