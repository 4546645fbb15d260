"""When the operator writes (pure): a renewed lease is published only when its published expiry
would lapse before the next sweep; any other change is published at once; an object the
apiserver already holds is not applied again."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import itertools
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.sealing.secrets import Signer
from teeroute_operator import publishing
from teeroute_operator.lease import Record, Rejected, Unreachable, Verified, next_record
from teeroute_operator.leases import Lease, LeaseBook

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
MAX_AGE = dt.timedelta(minutes=5)
INTERVAL = dt.timedelta(seconds=60)
REFRESH = publishing.horizon(INTERVAL, deadline_s=10)
HPKE = base64.b64encode(b"\x11" * 32).decode()
POOL = ("m", "p")


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def held(expires_in: float, attested_ago: float = 10, **changes: Any) -> Record:
    record = Record(
        attested_at=at(-attested_ago),
        expires_at=at(expires_in),
        tee="simulated",
        measurement="ab" * 48,
        chip_id="chip",
        hpke_key=hashlib.sha256(base64.b64decode(HPKE)).hexdigest(),
        hpke_public_key=HPKE,
    )
    return dataclasses.replace(record, **changes)


def test_the_refresh_horizon_covers_the_next_sweep_its_deadline_and_slack() -> None:
    assert dt.timedelta(seconds=60 * 1.5 + 10 + 10) == REFRESH


@pytest.mark.parametrize(
    ("case", "shown", "current", "publish"),
    [
        ("nothing shown yet", None, held(300), True),
        ("renewed, plenty left", held(200), held(300), False),
        ("renewed, would lapse before the next sweep", held(100), held(300), True),
        ("renewed, already lapsed", held(-1), held(300), True),
        ("expiry shortened (maxEvidenceAge cut)", held(200), held(150), True),
        ("rejected: the lease ends", held(200), held(0, expires_at=None, failure="x"), True),
        ("unreachable, lease kept, new failure", held(200), held(200, failure="timeout"), True),
        ("another enclave key", held(200), held(300, hpke_key="f" * 64), True),
        ("another measurement", held(200), held(300, measurement="cd" * 48), True),
        ("chip changed", held(200), held(300, chip_changed="a -> b"), True),
        ("secrets released since", held(200), held(300, secrets_released="f" * 64), True),
        ("not admitted, still not", held(0, expires_at=None), held(0, expires_at=None), True),
    ],
)
def test_what_is_published_after_a_renewal(
    case: str, shown: Record | None, current: Record, publish: bool
) -> None:
    chosen = publishing.to_show(shown, current, NOW, REFRESH)
    assert (chosen is current) == publish, case
    assert chosen.expires_at is None or current.expires_at is not None
    if chosen.expires_at is not None and current.expires_at is not None:
        assert chosen.expires_at <= current.expires_at  # never shows more than it holds


def verified(at_s: float) -> Verified:
    record = held(0)
    return Verified(
        issued_at=at(at_s),
        tee=record.tee,
        measurement=record.measurement,
        chip_id=record.chip_id,
        hpke_key=record.hpke_key,
        signing_key="",
        hpke_public_key=HPKE,
    )


def test_a_steady_endpoint_is_republished_once_per_refresh_round_and_never_lapses() -> None:
    """Sweeps every 60 s with 5 m leases: the published record changes every 4th sweep, and at
    every sweep it still runs past the next one."""
    book = LeaseBook(Signer.from_private(ed25519.Ed25519PrivateKey.generate()))
    current, published, tokens = Record(), [], []
    for sweep in range(20):
        now = at(sweep * 60)
        current = next_record(current, verified(sweep * 60), now=now, max_age=MAX_AGE).record
        lease = Lease(current, "pod-a", "http://10.0.0.1:8443", "uid-a")
        shown = book.renew(POOL, "uid-a", lease, now, REFRESH)
        assert shown.record.expires_at is not None
        assert shown.record.expires_at - now >= INTERVAL * 1.5  # outlives the next sweep
        published.append(shown.record.expires_at)
        tokens.append(book.token(POOL, shown))
    changes = sum(1 for a, b in itertools.pairwise(published) if a != b)
    assert changes == 4  # sweeps 4, 8, 12, 16: one write per 240 s, not one per sweep
    assert len(set(tokens)) == changes + 1  # an unchanged record signs to the same token


def test_a_failing_endpoint_is_published_at_once() -> None:
    book = LeaseBook(None)
    start = next_record(Record(), verified(0), now=NOW, max_age=MAX_AGE).record
    book.renew(POOL, "k", Lease(start, "a", "http://a"), NOW, REFRESH)
    later = at(60)
    failed = next_record(start, Rejected("measurement"), now=later, max_age=MAX_AGE).record
    shown = book.renew(POOL, "k", Lease(failed, "a", "http://a"), later, REFRESH)
    assert shown.record is failed and not shown.record.admitted(later)
    away = next_record(failed, Unreachable("timeout"), now=at(120), max_age=MAX_AGE).record
    assert book.renew(POOL, "k", Lease(away, "a", "http://a"), at(120), REFRESH).record is away


def test_an_endpoint_at_another_url_is_published_at_once() -> None:
    book = LeaseBook(None)
    record = held(300)
    book.renew(POOL, "k", Lease(record, "a", "http://10.0.0.1:8443"), NOW, REFRESH)
    moved = Lease(held(299), "a", "http://10.0.0.2:8443")
    assert book.renew(POOL, "k", moved, NOW, REFRESH) == moved


def test_forgotten_endpoints_leave_the_published_book_too() -> None:
    book = LeaseBook(None)
    book.renew(POOL, "k", Lease(held(300), "a", "http://a"), NOW, REFRESH)
    book.keep(POOL, [])
    assert book.shown(POOL, "k") is None and book.get(POOL, "k") is None


@pytest.mark.parametrize(
    ("live", "desired", "covered"),
    [
        ({"a": 1, "b": {"c": "x", "d": 2}}, {"b": {"c": "x"}}, True),
        ({"a": 1}, {"a": 2}, False),
        ({"a": 1}, {"b": 1}, False),
        ({"a": [1, 2]}, {"a": [1, 2]}, True),
        ({"a": [1, 2, 3]}, {"a": [1, 2]}, False),  # someone added an item: rewrite the list
        ({"a": [{"x": 1, "default": 0}]}, {"a": [{"x": 1}]}, True),
        ({"a": True}, {"a": 1}, False),
        ({"a": "1"}, {"a": 1}, False),
        ({}, {"a": None}, True),  # a merge patch's removal of what is absent
        ({"a": "x"}, {"a": None}, False),
        ({}, {"a": [], "b": {}}, True),  # the apiserver drops empty lists and maps
        ({"a": [1]}, {"a": []}, False),
        (None, [], False),
        ([], [], True),
    ],
)
def test_covers_compares_what_an_apply_would_send(live: Any, desired: Any, covered: bool) -> None:
    assert publishing.covers(live, desired) is covered
