"""How fast an endpoint answers, from what the gateway itself timed (docs/scores.md). The
request path adds one `Sample` per answer; the router (`provider.sort`, the soft
preferences) and the scoreboard read `summary` of the samples. Pure but for `SpeedBook`.

Definitions (the same in the scoreboard, the router, the metrics and the ledger record):

    ttft_ms       streamed answers: request sent -> first content-bearing delta (text, a tool
                  call or reasoning; never the headers, a role-only or an empty delta);
                  whole answers: none; client-sealed streams: the agent's own figure from
                  the receipt, held to the frame timing the gateway saw
                  (`sealed_stream_timing`), none when the receipt has none
    tpot_ms       streamed: (last content - first content) / (output tokens - 1)
    tokens_per_s  output tokens / (request sent -> last content, or the whole answer read),
                  so the wait for the first token counts against it (OpenRouter's throughput)

Gaming resistance (docs/scores.md): every sample carries the endpoint's load (its requests in
flight when it was sent, itself included) and is weighted by it, so the answers given under
load count more than the idle ones; and pools are compared on the loads they all saw
(`matched_floor`): an engine fast only while idle is scored where it is slow. Samples decay
with a half-life and leave after the window.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

WINDOW_S = 300.0
"""Samples older than this are dropped (OpenRouter's rolling 5 minutes)."""
HALF_LIFE_S = 60.0
"""A sample's weight halves every minute: recent behaviour leads."""
MAX_SAMPLES = 512
"""Samples kept per endpoint (memory bound under any request rate)."""
CLAIM_SLACK_MS = 1.0
"""Rounding and clock reads between the two ends' timings of one stream."""
MIN_MATCHED = 5
"""Samples a pool needs at or above a load for pools to be compared there."""


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    """When the answer ended (monotonic seconds)."""
    load: int
    """The endpoint's requests in flight when this one was sent, itself included (>= 1)."""
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    tokens_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class Speed:
    """One endpoint's or pool's speed over its samples (None: no sample of that kind)."""

    ttft_ms_p50: float | None = None
    ttft_ms_p95: float | None = None
    tpot_ms_p50: float | None = None
    tokens_per_s_p50: float | None = None
    samples: int = 0
    load_floor: int = 1
    """The lowest load whose samples were used (1: all of them)."""


class SpeedBook:
    """One endpoint's recent samples (bounded)."""

    def __init__(self) -> None:
        self._samples: collections.deque[Sample] = collections.deque(maxlen=MAX_SAMPLES)

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)

    def recent(self, now: float) -> list[Sample]:
        while self._samples and now - self._samples[0].at > WINDOW_S:
            self._samples.popleft()
        return list(self._samples)


def weight(sample: Sample, now: float) -> float:
    """Load x decay: an answer given with 8 in flight counts 8 times one given alone."""
    return max(1, sample.load) * math.pow(0.5, max(0.0, now - sample.at) / HALF_LIFE_S)


def weighted_quantile(pairs: Iterable[tuple[float, float]], q: float) -> float | None:
    """The smallest value whose cumulative weight reaches q of the total; None if empty."""
    ordered = sorted(pairs)
    total = sum(w for _, w in ordered)
    if not ordered or total <= 0:
        return None
    reached = 0.0
    for value, w in ordered:
        reached += w
        if reached >= q * total - 1e-9:
            return value
    return ordered[-1][0]


def summary(samples: Sequence[Sample], now: float, floor: int = 1) -> Speed:
    """Weighted percentiles of the samples at load >= floor (all, if fewer than MIN_MATCHED
    are)."""
    used = [s for s in samples if s.load >= floor]
    if len(used) < MIN_MATCHED:
        used, floor = list(samples), 1

    def pct(field: Callable[[Sample], float | None], q: float) -> float | None:
        pairs = [(v, weight(s, now)) for s in used if (v := field(s)) is not None]
        found = weighted_quantile(pairs, q)
        return None if found is None else round(found, 3)

    return Speed(
        ttft_ms_p50=pct(_ttft, 0.5),
        ttft_ms_p95=pct(_ttft, 0.95),
        tpot_ms_p50=pct(_tpot, 0.5),
        tokens_per_s_p50=pct(_tps, 0.5),
        samples=len(used),
        load_floor=floor,
    )


def matched_floor(groups: Iterable[Sequence[Sample]]) -> int:
    """The highest load (a power of two) at or above which every group with samples has at
    least MIN_MATCHED of them: where pools are compared like with like."""
    present = [g for g in groups if g]
    floor = 1
    while present and all(_at_least(g, floor * 2) >= MIN_MATCHED for g in present):
        floor *= 2
    return floor


def _at_least(samples: Sequence[Sample], load: int) -> int:
    return sum(1 for s in samples if s.load >= load)


def stream_timing(
    sent: float, first: float | None, last: float | None, output_tokens: int
) -> tuple[float | None, float | None, float | None]:
    """(ttft_ms, tpot_ms, tokens_per_s) of a streamed answer from its perf_counter times."""
    if first is None or last is None:
        return None, None, None
    ttft = (first - sent) * 1000
    tpot = (last - first) * 1000 / (output_tokens - 1) if output_tokens > 1 else None
    elapsed = last - sent
    tps = output_tokens / elapsed if output_tokens and elapsed > 0 else None
    return ttft, tpot, tps


def sealed_stream_timing(
    sent: float,
    frames: tuple[float, float] | None,
    output_tokens: int,
    claimed_us: tuple[int | None, int | None],
) -> tuple[float | None, float | None]:
    """(ttft_ms, tpot_ms) of a client-sealed stream, which the gateway cannot open: the
    agent's own figures from the receipt (`claimed_us`: ttft_us, tpot_us), held to what the
    frames (perf_counter times of the first and last CHUNK) allow. The first token cannot
    have come before the first frame nor after the last, so the TTFT is clamped there; the
    TPOT is at least the rest of the answer as the gateway saw it spread over the other
    tokens, so a lower TTFT claim only moves time into TPOT (docs/scores.md)."""
    claimed_ttft, claimed_tpot = claimed_us
    if frames is None or claimed_ttft is None:
        return None, None
    first, last = (frames[0] - sent) * 1000, (frames[1] - sent) * 1000
    ttft = min(max(claimed_ttft / 1000, first), last)
    if output_tokens < 2:
        return ttft, None
    seen = (last - ttft) / (output_tokens - 1)
    return ttft, max(seen, (claimed_tpot or 0) / 1000)


def claim_consistent(observed_ttft_ms: float | None, claimed_ttft_us: int | None) -> bool:
    """Gateway-sealed streams are timed by the gateway; the agent's claim is only checked:
    the agent sees the first token before the gateway does, so it cannot claim more."""
    if observed_ttft_ms is None or claimed_ttft_us is None:
        return True
    return claimed_ttft_us / 1000 <= observed_ttft_ms + CLAIM_SLACK_MS


def whole_timing(sent: float, done: float, output_tokens: int) -> float | None:
    """tokens/s of a whole answer (or a stream timed only by its frames)."""
    elapsed = done - sent
    return output_tokens / elapsed if output_tokens and elapsed > 0 else None


def _ttft(s: Sample) -> float | None:
    return s.ttft_ms


def _tpot(s: Sample) -> float | None:
    return s.tpot_ms


def _tps(s: Sample) -> float | None:
    return s.tokens_per_s
