"""What a miner's speed, score and weight are made of (speed.py, scores.py, the relay's
timing): pure functions, table-driven. The same numbers against real engines over HTTP are
in test_ttft.py; the ranking over many miners in e2e/bench/ranking.py."""

from __future__ import annotations

import itertools
from decimal import Decimal

import orjson
import pytest

from teeroute_gateway import scores
from teeroute_gateway.health import HealthBook
from teeroute_gateway.listings import scoreboard, weights_view
from teeroute_gateway.requests import CHAT, COMPLETION
from teeroute_gateway.selection import pool_speeds
from teeroute_gateway.speed import (
    HALF_LIFE_S,
    Sample,
    Speed,
    matched_floor,
    stream_timing,
    summary,
    weight,
    weighted_quantile,
)
from teeroute_gateway.streaming import StreamRelay
from tests.gateway.builders import catalog, pool, route

NOW = 1000.0


def event(delta: dict[str, object] | None = None, text: str | None = None) -> bytes:
    choice: dict[str, object] = {"index": 0, "finish_reason": None}
    if text is not None:
        choice["text"] = text
    else:
        choice["delta"] = delta or {}
    return b"data: " + orjson.dumps({"id": "c", "choices": [choice]}) + b"\n\n"


ROLE = event({"role": "assistant", "content": ""})
EMPTY = event({"content": ""})
NULL = event({"content": None})
TOKEN = event({"content": "Hi"})
TOOL = event({"tool_calls": [{"index": 0, "id": "t", "function": {"name": "f"}}]})
REASONING = event({"reasoning_content": "hmm"})
USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'


@pytest.mark.parametrize(
    ("case", "kind", "runs", "first"),
    [
        ("role, then a token", CHAT, [ROLE, TOKEN, TOKEN], 2),
        ("empty and null deltas are padding", CHAT, [ROLE, EMPTY, NULL, EMPTY, TOKEN], 5),
        ("a tool call is content", CHAT, [ROLE, TOOL, TOOL], 2),
        ("reasoning is content", CHAT, [ROLE, REASONING, TOKEN], 2),
        ("completion text", COMPLETION, [event(text=""), event(text="a"), USAGE], 2),
        ("no content at all", CHAT, [ROLE, EMPTY, USAGE], None),
        ("role and token in one read", CHAT, [ROLE + TOKEN, TOKEN], 1),
    ],
)
def test_the_relay_times_the_first_content_bearing_delta(
    case: str, kind: str, runs: list[bytes], first: int | None
) -> None:
    reads = itertools.count(1)  # the clock reads 1, 2, 3, ...
    relay = StreamRelay(kind, lambda: float(next(reads)))
    first_run = None
    for number, run in enumerate(runs, start=1):
        relay.feed(run)
        if first_run is None and relay.first_content_at is not None:
            first_run = number
    assert first_run == first
    # one clock read per run from the first content on, none before
    clock_reads = len(runs) - first + 1 if first else 0
    assert relay.last_content_at == (float(clock_reads) if first else None)
    assert relay.first_content_at == (1.0 if first else None)


@pytest.mark.parametrize(
    ("pairs", "q", "expected"),
    [
        ([], 0.5, None),
        ([(5.0, 1.0)], 0.5, 5.0),
        ([(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)], 0.5, 2.0),
        ([(1.0, 1.0), (100.0, 3.0)], 0.5, 100.0),  # the loaded answer weighs 3
        ([(1.0, 3.0), (100.0, 1.0)], 0.5, 1.0),
        ([(1.0, 1.0), (2.0, 1.0), (3.0, 1.0), (4.0, 1.0)], 0.95, 4.0),
    ],
)
def test_weighted_quantile(pairs: list[tuple[float, float]], q: float, expected: float) -> None:
    assert weighted_quantile(pairs, q) == expected


@pytest.mark.parametrize(
    ("load", "age_s", "expected"),
    [(1, 0, 1.0), (8, 0, 8.0), (1, HALF_LIFE_S, 0.5), (4, 2 * HALF_LIFE_S, 1.0), (0, 0, 1.0)],
)
def test_samples_weigh_their_load_and_decay_by_half_life(
    load: int, age_s: float, expected: float
) -> None:
    assert weight(Sample(NOW - age_s, load), NOW) == pytest.approx(expected)


def _loads(*counts: tuple[int, int]) -> list[Sample]:
    return [Sample(NOW, load, 10.0) for load, n in counts for _ in range(n)]


@pytest.mark.parametrize(
    ("groups", "floor"),
    [
        ([], 1),
        ([_loads((1, 20))], 1),
        ([_loads((1, 20), (8, 5))], 8),
        ([_loads((1, 20), (8, 5)), _loads((4, 5))], 4),
        ([_loads((1, 20), (8, 5)), _loads((1, 30))], 1),  # compared where both were
        ([_loads((1, 20), (8, 5)), []], 8),  # a pool without samples does not count
        ([_loads((2, 4), (8, 1))], 2),  # 5 samples at load >= 2, one at >= 4
    ],
)
def test_pools_are_compared_at_the_highest_load_they_all_saw(
    groups: list[list[Sample]], floor: int
) -> None:
    assert matched_floor(groups) == floor


def test_a_summary_falls_back_to_all_samples_when_too_few_are_at_the_floor() -> None:
    samples = _loads((1, 10), (8, 2))
    assert summary(samples, NOW, floor=8).load_floor == 1
    assert summary(samples, NOW, floor=8).samples == 12


@pytest.mark.parametrize(
    ("sent", "first", "last", "tokens", "expected"),
    [
        (0.0, 0.2, 1.2, 11, (200.0, 100.0, 11 / 1.2)),
        (0.0, 0.2, 0.2, 1, (200.0, None, 5.0)),
        (0.0, None, None, 0, (None, None, None)),
        (0.0, 0.005, 0.005, 0, (5.0, None, None)),
    ],
)
def test_stream_timing(
    sent: float,
    first: float | None,
    last: float | None,
    tokens: int,
    expected: tuple[float | None, ...],
) -> None:
    assert stream_timing(sent, first, last, tokens) == pytest.approx(expected)


def test_a_first_token_sent_early_buys_no_reference_speed() -> None:
    """256 tokens over 30 + 255 x 5 ms, or the first at 1 ms and the rest no sooner."""
    honest = scores.reference_speed(Speed(ttft_ms_p50=30.0, tpot_ms_p50=5.0))
    early = scores.reference_speed(Speed(ttft_ms_p50=1.0, tpot_ms_p50=5.0 + 29.0 / 255))
    assert early == pytest.approx(honest)
    assert scores.reference_speed(Speed(tokens_per_s_p50=42.0)) == 42.0
    assert scores.reference_speed(Speed()) is None


@pytest.mark.parametrize(
    ("uptime", "errors", "speed", "price", "expected"),
    [
        (1.0, 0.0, 100.0, "2", 50.0),
        (0.9, 0.0, 100.0, "2", 45.0),  # uptime scales
        (1.0, 0.5, 100.0, "2", 25.0),  # the last minute's errors bite
        (1.0, 0.0, 100.0, "4", 25.0),  # twice the price, half the score
        (1.0, 0.0, 200.0, "4", 50.0),  # ... unless twice as fast
        (None, None, 100.0, "2", 0.0),  # never served: nothing
        (1.0, 0.0, None, "2", 0.0),
        (1.0, 0.0, 1.0, "0", 1e6),  # free pools are priced at MIN_PRICE
    ],
)
def test_score_combines_reliability_speed_and_price(
    uptime: float | None, errors: float | None, speed: float | None, price: str, expected: float
) -> None:
    reliable = scores.reliability(uptime, errors)
    assert scores.score(reliable, speed, Decimal(price)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("uids", "weights", "expected"),
    [
        # as bittensor's convert_weights_and_uids_for_emit: max -> 65535, round, drop zeros
        ([0, 1, 2], [0.5, 0.25, 0.25], ([0, 1, 2], [65535, 32768, 32768])),
        ([3, 7], [1.0, 3.0], ([3, 7], [21845, 65535])),
        ([0, 1, 2], [1.0, 0.0, 0.000001], ([0], [65535])),
        ([0, 1], [0.0, 0.0], ([], [])),
        ([], [], ([], [])),
    ],
)
def test_u16_weights_are_scaled_as_a_validator_emits_them(
    uids: list[int], weights: list[float], expected: tuple[list[int], list[int]]
) -> None:
    assert scores.u16_weights(uids, weights) == expected


@pytest.mark.parametrize(("uids", "weights"), [([0], [-1.0]), ([-1], [1.0]), ([0, 1], [1.0])])
def test_u16_weights_refuse_what_the_chain_would(uids: list[int], weights: list[float]) -> None:
    with pytest.raises(ValueError):
        scores.u16_weights(uids, weights)


def test_normalized_weights_sum_to_one() -> None:
    assert scores.normalized({"a": 3.0, "b": 1.0, "c": 0.0}) == {"a": 0.75, "b": 0.25, "c": 0.0}
    assert scores.normalized({"a": 0.0}) == {"a": 0.0}


HONEST, GAMER = pool("honest"), pool("gamer")


def _served(book: HealthBook, name: str, samples: list[Sample]) -> None:
    entry = book.entry(f"ns/{name}/e0", f"ns/{name}")
    for sample in samples:
        book.observe(entry, sample)
        book.finished(entry, ok=True, now=NOW)


def _gamer_and_honest() -> HealthBook:
    """Mostly one request at a time, one burst of 8: the gamer answers in 5 ms alone and
    5 + 40 ms per other request in flight; the honest miner in 30 ms at any load."""
    book = HealthBook()
    idle = [(1, 5.0)] * 20
    burst = [(k, 5.0 + 40 * (k - 1)) for k in range(1, 9)]
    _served(book, "gamer", [Sample(NOW, load, ttft, 5.0) for load, ttft in idle + burst])
    _served(book, "honest", [Sample(NOW, load, 30.0, 5.0) for load, _ in idle + burst])
    return book


def test_a_miner_fast_only_while_idle_is_scored_where_it_is_slow() -> None:
    book = _gamer_and_honest()
    cat = catalog([HONEST, GAMER], route(["honest", "gamer"]))
    speeds = pool_speeds(cat.models["m"].backends, book, NOW)
    assert speeds["ns/gamer"].ttft_ms_p50 > speeds["ns/honest"].ttft_ms_p50  # type: ignore[operator]
    assert speeds["ns/gamer"].load_floor == 4
    plain_median = sorted(s.ttft_ms for s in book.get("ns/gamer/e0").speed.recent(NOW))[14]  # type: ignore[union-attr, type-var]
    assert plain_median == 5.0  # an unweighted median would have ranked the gamer first


def test_the_scoreboard_has_pool_and_endpoint_views_and_bittensor_weights() -> None:
    book = _gamer_and_honest()
    labelled = [pool("honest", labels={"teeroute.dev/uid": "7"}), pool("gamer")]
    cat = catalog(labelled, route(["honest", "gamer"]))
    board = scoreboard(cat, book, NOW)
    rows = {row["pool"]: row for row in board["data"]}
    assert board["load_floor"] == 4
    assert [e["endpoint"] for e in rows["ns/honest"]["by_endpoint"]] == ["ns/honest/e0"]
    assert rows["ns/honest"]["weight"] + rows["ns/gamer"]["weight"] == pytest.approx(1.0)
    assert rows["ns/gamer"]["weight"] < rows["ns/honest"]["weight"]
    emitted = weights_view(board, cat, "bittensor")
    assert emitted == {
        "uids": [7],
        "weights": [65535],
        "normalized": {"7": 1.0},
        "unmapped": ["ns/gamer"],
    }
    assert set(weights_view(board, cat, "weights")["weights"]) == {"ns/honest", "ns/gamer"}


def test_the_router_recomputes_pool_speeds_at_most_once_a_second() -> None:
    book = HealthBook()
    cat = catalog([HONEST], route(["honest"]))
    backends = cat.models["m"].backends
    _served(book, "honest", [Sample(NOW, 1, 30.0)])
    assert pool_speeds(backends, book, NOW)["ns/honest"].ttft_ms_p50 == 30.0
    _served(book, "honest", [Sample(NOW + 0.5, 1, 90.0)] * 3)
    assert pool_speeds(backends, book, NOW + 0.5)["ns/honest"].ttft_ms_p50 == 30.0
    assert pool_speeds(backends, book, NOW + 1.5)["ns/honest"].ttft_ms_p50 == 90.0
