"""Time to first token as miners really perform it: real engine simulators of known speed
behind a real gateway, which must measure TTFT at the first token (not at the headers or the
role delta a streaming engine sends at once), route `provider.sort=latency` by it, and not
be fooled by padding or by an engine fast only while few requests are in flight.

Timing tolerances: the issue asks for ±20 % (at least ±3 ms) on a miner measured alone; the
medians of a dozen requests hold that on a busy 2-core machine because only the gateway's
own hop (about a millisecond) adds to what the engine waits. Orderings are checked with
margins of tens of milliseconds. The long variant is e2e/bench/ranking.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.procs import Proc, create_key, engine, gateway, generation, lease, write_config

ADMIN = "tra-ttft-admin"
ENGINES = {
    # name: (flags, true TTFT ms)
    "fast": (["--ttft-ms", "5", "--tokens-per-s", "400"], 5.0),
    "mid": (["--ttft-ms", "30", "--tokens-per-s", "150"], 30.0),
    "slow": (["--ttft-ms", "90", "--tokens-per-s", "50"], 90.0),
    "late": (["--ttft-ms", "200", "--tokens-per-s", "100"], 200.0),
    # gaming: empty deltas every 2 ms before a first token at 60 ms
    "padder": (["--ttft-ms", "60", "--tokens-per-s", "150", "--pad-empty-ms", "2"], 60.0),
    # gaming: 5 ms alone, 40 ms more per other request in flight
    "loaded": (["--ttft-ms", "5", "--tokens-per-s", "150", "--load-ttft-ms", "40"], 5.0),
}
MESSAGES = [{"role": "user", "content": "say something"}]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str]]:
    """Every engine sends its role delta at once, as vLLM does; one gateway serves them all
    (a pool each) behind one Route."""
    tmp = tmp_path_factory.mktemp("ttft")
    with contextlib.ExitStack() as stack:
        procs = {
            name: stack.enter_context(engine(tmp, name, "--role-first", *flags))
            for name, (flags, _) in ENGINES.items()
        }
        config = write_config(
            tmp / "gw.yaml",
            {name: [(name, proc.url)] for name, proc in procs.items()},
            leases={name: [lease(name)] for name in procs},
            settings={"adminKeySha256": [hashlib.sha256(ADMIN.encode()).hexdigest()]},
        )
        key = create_key(config, "100")
        gw = stack.enter_context(gateway(config))
        yield gw, key


def body(pool: str | list[str], stream: bool = True, **provider: Any) -> dict[str, Any]:
    only = [pool] if isinstance(pool, str) else pool
    return {
        "model": "sim-model",
        "messages": MESSAGES,
        "max_tokens": 4,
        "stream": stream,
        "provider": {"only": only, **provider},
    }


async def _send(gw: Proc, key: str, pools: list[str], n: int, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency * len(pools))
    async with httpx.AsyncClient(base_url=gw.url, timeout=60, limits=limits) as http:

        async def one(pool: str) -> None:
            async with gate:
                answer = await http.post(
                    "/v1/chat/completions",
                    json=body(pool),
                    headers={"authorization": f"Bearer {key}"},
                )
                assert answer.status_code == 200, answer.text
                assert b"[DONE]" in answer.content

        await asyncio.gather(*(one(p) for p in pools for _ in range(n)))


def traffic(gw: Proc, key: str, pools: list[str], n: int = 12, concurrency: int = 1) -> None:
    """n streamed requests to each pool; `concurrency` of them at once per pool."""
    for pool in pools:
        asyncio.run(_send(gw, key, [pool], n, concurrency))


def board(gw: Proc) -> dict[str, dict[str, Any]]:
    rows = httpx.get(
        f"{gw.url}/v1/miners", headers={"authorization": f"Bearer {ADMIN}"}, timeout=10
    ).json()["data"]
    return {row["pool"].removeprefix("default/"): row for row in rows}


def first_choice(gw: Proc, key: str, pools: list[str]) -> str:
    """The pool `provider.sort=latency` sends a request to first."""
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json=body(pools, sort="latency"),
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer.headers["x-teeroute-pool"].removeprefix("default/")


def within(measured: float, true: float) -> bool:
    return abs(measured - true) <= max(3.0, 0.2 * true)


def test_ttft_of_engines_alone_is_measured_at_their_first_token(fleet: tuple[Proc, str]) -> None:
    gw, key = fleet
    pools = ["fast", "mid", "slow"]
    traffic(gw, key, pools)
    rows = board(gw)
    measured = {p: rows[p]["ttft_ms_p50"] for p in pools}
    assert all(within(measured[p], ENGINES[p][1]) for p in pools), measured


def test_sort_by_latency_prefers_the_engines_in_ttft_order(fleet: tuple[Proc, str]) -> None:
    gw, key = fleet
    pools = ["slow", "mid", "fast"]
    traffic(gw, key, pools, n=6)
    order = []
    left = list(pools)
    while left:
        order.append(first_choice(gw, key, left))
        left.remove(order[-1])
    assert order == ["fast", "mid", "slow"]


def test_an_engine_sending_its_role_at_once_and_its_first_token_late_is_scored_late(
    fleet: tuple[Proc, str],
) -> None:
    gw, key = fleet
    traffic(gw, key, ["late"], n=8)
    assert within(board(gw)["late"]["ttft_ms_p50"], 200.0)
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json=body("late"),
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )
    record = generation(gw, key, answer.headers["x-request-id"])
    assert within(record["ttft_ms"], 200.0), record


def test_a_whole_answer_has_no_ttft_but_is_timed_end_to_end(fleet: tuple[Proc, str]) -> None:
    gw, key = fleet
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json=body("late", stream=False),
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    record = generation(gw, key, answer.headers["x-request-id"])
    assert record["ttft_ms"] is None and record["latency_ms"] >= 200
    assert record["tpot_ms"] is None  # no stream, no time per output token


def test_a_streams_record_keeps_its_time_per_output_token(fleet: tuple[Proc, str]) -> None:
    """`slow` paces 50 tokens/s, 20 ms a token; the bounds are generous (a busy machine)."""
    gw, key = fleet
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={**body("slow"), "max_tokens": 12},
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    record = generation(gw, key, answer.headers["x-request-id"])
    assert record["output_tokens"] > 1, record
    assert 10.0 <= record["tpot_ms"] <= 60.0, record


def test_padding_with_empty_deltas_does_not_beat_an_honestly_faster_miner(
    fleet: tuple[Proc, str],
) -> None:
    gw, key = fleet
    traffic(gw, key, ["padder", "mid"], n=8)
    rows = board(gw)
    assert within(rows["padder"]["ttft_ms_p50"], 60.0), rows["padder"]
    assert rows["mid"]["ttft_ms_p50"] < rows["padder"]["ttft_ms_p50"]
    assert first_choice(gw, key, ["padder", "mid"]) == "mid"


def test_a_miner_fast_only_while_idle_ranks_below_an_honestly_faster_one(
    fleet: tuple[Proc, str],
) -> None:
    """Mostly one request at a time (where `loaded` answers in 5 ms, `mid` in 30), and one
    burst of 8 at once (where `loaded` needs 5 + 40 ms per other request): scored from the
    loads both saw, `loaded` is the slower."""
    gw, key = fleet
    traffic(gw, key, ["loaded", "mid"], n=20)
    traffic(gw, key, ["loaded", "mid"], n=8, concurrency=8)
    rows = board(gw)
    assert rows["mid"]["ttft_ms_p50"] < rows["loaded"]["ttft_ms_p50"], (rows["mid"], rows["loaded"])
    assert first_choice(gw, key, ["loaded", "mid"]) == "mid"
