"""The paced-engine scenario's settings, its request and its arithmetic. Pure, except that the
expected answer is computed with the engine simulator's own generator.

The engine simulator paces its answers (`--ttft-ms`, `--tokens-per-s`): one SSE event per
token per stream at the per-stream rate, as a real engine's steps. N streams run at once
through each mode; a run's numbers come from a measured window in the middle of it (the
streams started staggered over one answer's length before it, so all N are in flight):
tokens the clients received in the window, and the CPU seconds each process spent in it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sealedbench.modes import UPSTREAM_MODEL
from teeroute_engine_sim.generation import generate, request_digest
from teeroute_engine_sim.validation import parse_chat

MAX_TOKENS = 256  # the engine's answers are at most 255 tokens: the prompt's natural length
PROMPT_WORDS = 192  # with the chat framing, about 200 prompt tokens
PROCESSES = ("gateway", "agent", "engine", "client")
# issue 16: what the per-token path must reach (µs of CPU per streamed token)
GOALS = (
    ("gateway", "plain", 8.0),
    ("gateway", "gateway", 10.0),
    ("agent", "gateway", 10.0),
    ("agent", "client", 10.0),
)


@dataclass(frozen=True)
class Paced:
    """One paced benchmark's settings."""

    streams: tuple[int, ...]  # concurrent streams per run, each value a run per mode
    tokens_per_s: float  # per stream
    ttft_ms: float
    seconds: float  # the measured window
    rounds: int

    def answer_s(self, tokens: int) -> float:
        """How long one answer of `tokens` tokens takes at the pace."""
        return self.ttft_ms / 1000 + (tokens - 1) / self.tokens_per_s


_FILLER = (
    "the gateway routes each sealed request to a miner whose enclave was verified and the "
    "agent answers with tokens in a steady stream while the ledger counts every one of them"
)


def prompt_text(variant: int) -> str:
    filler = _FILLER.split()
    words = [filler[i % len(filler)] for i in range(PROMPT_WORDS)]
    return " ".join(words) + f" ({variant})"


def messages(variant: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt_text(variant)}]


def request(model: str, variant: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": messages(variant),
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def body(model: str, variant: int) -> bytes:
    return json.dumps(request(model, variant), separators=(",", ":")).encode()


@dataclass(frozen=True)
class Answer:
    """What the engine answers the scenario's request (its own parser and generator)."""

    variant: int
    prompt_tokens: int
    completion_tokens: int


def engine_answer(variant: int) -> Answer:
    parsed = parse_chat(body(UPSTREAM_MODEL, variant), (UPSTREAM_MODEL,))
    digest = request_digest(seed=0, model=UPSTREAM_MODEL, request_seed=None, prompt=parsed.prompt)
    completion = generate(digest, parsed.max_tokens, parsed.stop)
    return Answer(variant, parsed.prompt_tokens, completion.completion_tokens)


def longest_answer(tries: int = 5000) -> Answer:
    """The first prompt variant whose answer is the longest the engine gives (255 tokens)."""
    best = engine_answer(0)
    for variant in range(1, tries):
        if best.completion_tokens >= MAX_TOKENS - 1:
            break
        found = engine_answer(variant)
        best = found if found.completion_tokens > best.completion_tokens else best
    return best


def _per(amount: float, count: float, scale: float) -> float | None:
    return round(amount * scale / count, 2) if count else None


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2)


def merge(runs: Sequence[dict[str, Any]], streams: int, settings: Paced) -> dict[str, Any]:
    """The rounds of one mode and stream count as one row: tokens and CPU summed (CPU per token
    over all rounds), tok/s the median over the rounds."""
    if not runs:
        raise ValueError("nothing to merge")
    tokens = sum(r["tokens_in_window"] for r in runs)
    window = sum(r["window_s"] for r in runs)
    cpu = {p: round(sum(r["cpu_s"][p] for r in runs), 3) for p in PROCESSES}
    busy = {c: sum(r["core_busy_s"][c] for r in runs) for c in runs[0]["core_busy_s"]}
    ttft = [t for r in runs for t in r["ttft_ms"]]
    gaps = [g for r in runs for g in r["gap_ms"]]
    return {
        "streams": streams,
        "rounds": len(runs),
        "offered_tok_s": round(streams * settings.tokens_per_s, 1),
        "tok_s": round(statistics.median(r["tokens_in_window"] / r["window_s"] for r in runs), 1),
        "tokens_in_window": tokens,
        "window_s": round(window, 3),
        "cpu_s": cpu,
        "cpu_us_per_token": {p: _per(cpu[p], tokens, 1e6) for p in PROCESSES},
        "cpu_util": {p: _per(cpu[p], window, 1.0) for p in PROCESSES},
        "core_busy": {c: _per(b, window, 1.0) for c, b in busy.items()},
        "streams_checked": sum(r["streams_checked"] for r in runs),
        "tokens_checked": sum(r["tokens_checked"] for r in runs),
        "bad_streams": sum(r["bad_streams"] for r in runs),
        "first_bad": next((r["first_bad"] for r in runs if r["first_bad"]), ""),
        "ttft_ms": {"p50": _quantile(ttft, 0.5), "p99": _quantile(ttft, 0.99)},
        "gap_ms": {
            "p50": _quantile(gaps, 0.5),
            "p99": _quantile(gaps, 0.99),
            "max": max(gaps, default=None),
        },
        "by_round": [
            {"tok_s": round(r["tokens_in_window"] / r["window_s"], 1), "cpu_s": r["cpu_s"]}
            for r in runs
        ],
    }


def verdicts(results: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Issue 16's per-token goals, per stream count: measured µs and pass (None: not run)."""
    rows = []
    for process, mode, limit in GOALS:
        for streams, row in sorted(results.get(mode, {}).items(), key=lambda kv: int(kv[0])):
            value = row["cpu_us_per_token"].get(process)
            rows.append(
                {
                    "goal": f"{process} CPU per streamed token ≤ {limit:g} µs",
                    "mode": mode,
                    "streams": int(streams),
                    "value": value,
                    "pass": value <= limit if value is not None else None,
                }
            )
    return rows
