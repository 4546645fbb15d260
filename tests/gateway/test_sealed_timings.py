"""The agent's own timings in sealed receipts (docs/scores.md, docs/sealed-mode.md): the agent
times a stream inside the TEE and reports `ttft_us` / `tpot_us` in the receipt it tags (only
to readers that announced they read them); the gateway scores client-sealed streams by them,
held to the frame timing it saw, and times gateway-sealed streams itself.

The rules are pure (`speed.sealed_stream_timing`, `claim_consistent`); the behaviour runs a
real engine simulator (role delta at once, first token after TTFT_MS) behind a real agent and
a real gateway. Tolerance as tests/gateway/test_ttft.py: ±20 % (at least ±3 ms) on medians."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from teeroute.sealing.receipt_body import FIELDS
from teeroute_gateway import scores
from teeroute_gateway.speed import Speed, claim_consistent, sealed_stream_timing

from . import sealed_v2
from .miners import agent, chip_dir, verified_lease
from .procs import Proc, create_key, engine, gateway, generation
from .test_gateway_sealed import _config

pytestmark = pytest.mark.timeout(240)

TTFT_MS = 150.0
TOKENS_PER_S = 100  # 10 ms per token
RUNS = 3

# -- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "tokens", "claimed", "expected"),
    [
        # an honest claim between the first and the last frame stands; TPOT from the frames
        ((0.002, 0.5), 11, (120_000, 30_000), (120.0, 38.0)),
        # a claim before the first frame is raised to it (the token cannot come earlier)
        ((0.05, 0.5), 11, (1_000, 1_000), (50.0, 45.0)),
        # a claim after the last frame is cut to it; TPOT is then the agent's own
        ((0.002, 0.5), 11, (900_000, 20_000), (500.0, 20.0)),
        ((0.002, 0.5), 1, (120_000, None), (120.0, None)),  # one token: no TPOT
        ((0.002, 0.5), 11, (None, None), (None, None)),  # no claim (an older agent)
        (None, 11, (120_000, 30_000), (None, None)),  # no frame seen
    ],
)
def test_sealed_stream_timing(
    frames: tuple[float, float] | None,
    tokens: int,
    claimed: tuple[int | None, int | None],
    expected: tuple[float | None, float | None],
) -> None:
    assert sealed_stream_timing(0.0, frames, tokens, claimed) == pytest.approx(expected)


@pytest.mark.parametrize("lie", [(1, 1), (0, 0), (40_000, 1)])
def test_a_claim_faster_than_the_frames_allow_scores_no_better(lie: tuple[int, int]) -> None:
    """The attacker: the miner's agent claims a first token before the first frame, or a
    TPOT the frames rule out; it is scored no better than an honest claim of what the
    frames show (first token with the first frame, the rest spread to the last)."""
    frames, tokens = (0.05, 0.5), 11

    def scored(claimed: tuple[int, int]) -> tuple[float | None, float | None]:
        return sealed_stream_timing(0.0, frames, tokens, claimed)

    honest = scored((50_000, 45_000))
    lying = scored(lie)
    assert lying[0] is not None and honest[0] is not None and lying[0] >= honest[0]
    speed = [scores.reference_speed(Speed(t, t, p)) for t, p in (honest, lying)]
    assert speed[1] is not None and speed[0] is not None and speed[1] <= speed[0]


@pytest.mark.parametrize(
    ("observed_ms", "claimed_us", "consistent"),
    [(150.0, 149_000, True), (150.0, 151_000, True), (150.0, 152_000, False),
     (None, 152_000, True), (150.0, None, True)],
)  # fmt: skip
def test_an_agent_cannot_see_the_first_token_after_the_gateway(
    observed_ms: float | None, claimed_us: int | None, consistent: bool
) -> None:
    assert claim_consistent(observed_ms, claimed_us) is consistent


# -- through a real agent and gateway -------------------------------------------------------

Setup = tuple[Proc, str, dict[str, Any]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("timings")
    chips = chip_dir(tmp_path_factory.mktemp("chips"))
    speed = ["--ttft-ms", str(TTFT_MS), "--tokens-per-s", str(TOKENS_PER_S), "--role-first"]
    with (
        engine(tmp, "e0", *speed) as eng,
        agent(chips, eng.url, tmp / "agent.log") as miner,
    ):
        lease = verified_lease("m0", miner.url, chips)
        config = _config(tmp / "gateway.yaml", lease, {**lease, "signingKeySha256": "ab" * 32})
        key = create_key(config, "10")
        with gateway(config) as gw:
            yield gw, key, lease


def _chat(seed: int) -> dict[str, Any]:
    return {
        "model": "sim-model",
        "messages": [{"role": "user", "content": "time me"}],
        "max_tokens": 8,
        "stream": True,
        "seed": seed,
    }


def _near(measured: float, expected: float) -> bool:
    return abs(measured - expected) <= max(3.0, 0.2 * expected)


def _client_sealed(setup: Setup, timings: bool, seed: int) -> tuple[Any, dict[str, Any]]:
    gw, key, lease = setup
    session = sealed_v2.open_session(gw.url, key, lease)
    frame, exchange = sealed_v2.seal(session, _chat(seed), timings=timings)
    answer = sealed_v2.post_sealed(gw.url, key, frame)
    assert answer.status_code == 200, answer.text
    opened = sealed_v2.read_answer(answer.content, exchange, session.receipt_key)
    return opened.receipt, generation(gw, key, answer.headers["x-request-id"])


def test_a_client_sealed_stream_is_scored_by_the_agents_own_ttft(setup: Setup) -> None:
    runs = [_client_sealed(setup, True, seed) for seed in range(RUNS)]
    for receipt, record in runs:
        assert record["receipt_status"] == "valid"
        assert receipt.ttft_us is not None and receipt.tpot_us is not None
        # the gateway's figure is the agent's, at least the first frame: never below it
        assert record["ttft_ms"] >= receipt.ttft_us / 1000 - 0.01
        assert record["tpot_ms"] is not None
    agent_ttft = statistics.median(r.ttft_us / 1000 for r, _ in runs)
    gateway_ttft = statistics.median(rec["ttft_ms"] for _, rec in runs)
    assert _near(agent_ttft, TTFT_MS), agent_ttft  # not the role delta sent at once
    assert _near(gateway_ttft, TTFT_MS), gateway_ttft


def test_a_client_from_before_timings_gets_the_receipt_it_can_read(setup: Setup) -> None:
    receipt, record = _client_sealed(setup, False, 7)
    assert set(json.loads(receipt.body)) == {"v", *FIELDS}  # what an older parser accepts
    assert record["receipt_status"] == "valid"
    assert record["ttft_ms"] is None  # the frames alone cannot tell the first token


def test_a_gateway_sealed_stream_is_timed_by_the_gateway_and_checked(setup: Setup) -> None:
    gw, key, _ = setup
    auth = {"Authorization": f"Bearer {key}"}
    records = []
    for seed in range(RUNS):
        answer = httpx.post(f"{gw.url}/v1/chat/completions", json=_chat(seed), headers=auth)
        assert answer.status_code == 200 and b"data: [DONE]" in answer.content, answer.text
        records.append(generation(gw, key, answer.headers["x-request-id"]))
    for record in records:
        assert record["receipt_status"] == "valid"
        claimed = record["receipt"]["ttft_us"] / 1000
        assert claim_consistent(record["ttft_ms"], record["receipt"]["ttft_us"]), claimed
    assert _near(statistics.median(r["ttft_ms"] for r in records), TTFT_MS)
