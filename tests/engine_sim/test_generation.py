"""Deterministic generation, the tokenizer, failure decisions and pacing: pure functions."""

from __future__ import annotations

import pytest

from teeroute_engine_sim.failures import fails
from teeroute_engine_sim.generation import (
    NATURAL_MIN,
    NATURAL_SPAN,
    generate,
    natural_length,
    request_digest,
)
from teeroute_engine_sim.pacing import token_due
from teeroute_engine_sim.tokens import count_tokens, split_tokens


def digest(prompt: str = "Hello, world!", *, seed: int = 0, model: str = "sim-model") -> bytes:
    return request_digest(seed=seed, model=model, request_seed=None, prompt=prompt)


DIGESTS = [digest(f"prompt number {i}") for i in range(200)]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", []),
        ("Hello, world!", ["Hello", ",", "world", "!"]),
        ("  spaced\tout\n", ["spaced", "out"]),
        ("don't stop", ["don", "'", "t", "stop"]),
        ("x=1.5", ["x", "=", "1", ".", "5"]),
        ("naïve café", ["naïve", "café"]),
    ],
)
def test_tokens_are_word_runs_and_single_other_characters(text: str, tokens: list[str]) -> None:
    assert split_tokens(text) == tokens
    assert count_tokens(text) == len(tokens)


def test_same_request_gets_the_same_answer() -> None:
    assert generate(digest(), 40) == generate(digest(), 40)


def test_an_answer_is_pinned_across_versions_and_machines() -> None:
    """Recorded expectations elsewhere (benchmarks, gateway tests) rely on it: change the
    generator only on purpose."""
    assert generate(digest(), 8).text == "holds, be verified keys router both leads"


@pytest.mark.parametrize(
    "other",
    [
        digest("Hello, world?"),
        digest(seed=1),
        digest(model="other-model"),
        request_digest(seed=0, model="sim-model", request_seed=7, prompt="Hello, world!"),
    ],
)
def test_prompt_model_and_seeds_each_change_the_answer(other: bytes) -> None:
    assert generate(other, 40).text != generate(digest(), 40).text


def test_the_answer_counts_back_to_its_completion_tokens() -> None:
    for each in DIGESTS:
        completion = generate(each, None)
        assert count_tokens(completion.text) == completion.completion_tokens


def test_natural_lengths_stay_in_range_and_vary() -> None:
    lengths = {natural_length(each) for each in DIGESTS}
    assert min(lengths) >= NATURAL_MIN
    assert max(lengths) < NATURAL_MIN + NATURAL_SPAN
    assert len(lengths) > 50


def test_without_a_limit_the_answer_ends_naturally_with_a_full_stop() -> None:
    completion = generate(digest(), None)
    assert completion.finish_reason == "stop"
    assert completion.completion_tokens == natural_length(digest())
    assert completion.text.endswith(".")


def test_a_limit_below_the_natural_length_stops_for_length_at_exactly_the_limit() -> None:
    completion = generate(digest(), 5)
    assert completion.finish_reason == "length"
    assert completion.completion_tokens == 5


@pytest.mark.parametrize("extra", [0, 1, 1000])
def test_a_limit_at_or_above_the_natural_length_changes_nothing(extra: int) -> None:
    assert generate(digest(), natural_length(digest()) + extra) == generate(digest(), None)


def test_a_shorter_limit_yields_a_prefix_of_the_longer_answer() -> None:
    full = generate(digest(), None)
    for limit in range(1, full.completion_tokens):
        assert generate(digest(), limit).pieces == full.pieces[:limit]


def test_a_stop_sequence_cuts_the_text_before_it_and_counts_the_tokens_that_made_it() -> None:
    full = generate(digest(), None)
    sixth = full.pieces[5]
    start = full.text.index(sixth)
    completion = generate(digest(), None, stop=[sixth])
    assert completion.finish_reason == "stop"
    assert completion.text == full.text[:start]
    assert full.pieces.index(sixth) + 1 == completion.completion_tokens


def test_the_earliest_of_several_stop_sequences_wins() -> None:
    full = generate(digest(), None)
    late, early = full.pieces[9], full.pieces[2]
    completion = generate(digest(), None, stop=[late, early])
    assert completion.text == full.text[: full.text.index(early)]


@pytest.mark.parametrize("stop", [[], [""], ["never in the vocabulary: ¤"]])
def test_absent_or_empty_stop_sequences_change_nothing(stop: list[str]) -> None:
    assert generate(digest(), 30, stop) == generate(digest(), 30)


def test_a_stop_sequence_beyond_the_limit_is_never_reached() -> None:
    full = generate(digest(), None)
    last_word = full.pieces[-2]
    assert last_word not in full.text[: len("".join(full.pieces[:3]))]
    assert generate(digest(), 3, [last_word]).finish_reason == "length"


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.5, 0.9])
def test_failures_happen_at_the_configured_rate(rate: float) -> None:
    decisions = [fails(7, n, rate) for n in range(20_000)]
    assert sum(decisions) / len(decisions) == pytest.approx(rate, abs=0.015)


def test_failure_decisions_are_reproducible_for_a_seed_and_differ_between_seeds() -> None:
    first = [fails(1, n, 0.5) for n in range(200)]
    assert first == [fails(1, n, 0.5) for n in range(200)]
    assert first != [fails(2, n, 0.5) for n in range(200)]


@pytest.mark.parametrize(("rate", "expected"), [(0.0, False), (-1.0, False), (1.0, True)])
def test_rates_of_zero_and_one_decide_every_request(rate: float, expected: bool) -> None:
    assert {fails(3, n, rate) for n in range(1000)} == {expected}


@pytest.mark.parametrize(
    ("index", "ttft_ms", "tokens_per_s", "due"),
    [
        (0, 0, 0, 0.0),
        (0, 250, 10, 0.25),
        (10, 250, 10, 1.25),
        (10, 250, 0, 0.25),
        (10, 250, -5, 0.25),
        (99, 0, 100, 0.99),
    ],
)
def test_tokens_are_due_after_the_ttft_at_the_configured_pace(
    index: int, ttft_ms: float, tokens_per_s: float, due: float
) -> None:
    assert token_due(index, ttft_ms, tokens_per_s) == pytest.approx(due)
