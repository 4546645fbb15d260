"""The paced-engine scenario of the sealed benchmark: the request and the engine's answer to
it, counting a stream's tokens as its bytes arrive, the checks of a whole answer, rounds
merged into CPU per streamed token, the goals, the report; then one short run of every mode
(about 20 s) whose per-token numbers and token counts are checked against the engine's."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sealed
from sealedbench import ledger, paced, pacedreport, streams
from sealedbench.modes import UPSTREAM_MODEL

from teeroute_engine_sim.generation import generate, request_digest
from teeroute_engine_sim.responses import stream_events
from teeroute_engine_sim.validation import parse_chat
from teeroute_gateway.ledger.sqlite_ops import SCHEMA

BENCH = Path(sealed.__file__).resolve().parent
SETTINGS = paced.Paced(streams=(64, 128), tokens_per_s=32, ttft_ms=50, seconds=15, rounds=2)


def engine_stream(variant: int) -> bytes:
    """The SSE body the engine simulator streams for the scenario's request."""
    request = parse_chat(paced.body(UPSTREAM_MODEL, variant), (UPSTREAM_MODEL,))
    digest = request_digest(seed=0, model=UPSTREAM_MODEL, request_seed=None, prompt=request.prompt)
    completion = generate(digest, request.max_tokens)
    return b"".join(event for _, event in stream_events(request, completion, "id", 1))


def test_the_prompt_is_about_200_tokens_and_its_answer_the_engines_longest() -> None:
    answer = paced.longest_answer()
    assert 195 <= answer.prompt_tokens <= 210
    assert answer.completion_tokens == paced.MAX_TOKENS - 1 == 255
    assert paced.engine_answer(answer.variant) == answer
    sent = json.loads(paced.body("sim-client", answer.variant))
    assert (sent["model"], sent["max_tokens"], sent["stream"]) == ("sim-client", 256, True)
    assert sent["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("piece", [1, 7, 100, 1 << 20])
def test_tokens_are_counted_as_the_bytes_arrive_in_any_pieces(piece: int) -> None:
    answer = paced.longest_answer()
    raw = engine_stream(answer.variant)
    arrivals: list[int] = []
    counter = streams.SseTokens(arrivals.append)
    for start in range(0, len(raw), piece):
        counter.feed(raw[start : start + piece])
    assert counter.tokens == sum(arrivals) == answer.completion_tokens
    assert (counter.usage, counter.done) == (answer.completion_tokens, True)


def test_a_stream_that_is_not_sse_or_holds_an_oversized_event_is_refused() -> None:
    with pytest.raises(streams.StreamBroken, match="not an SSE data event"):
        streams.SseTokens(lambda n: None).feed(b'{"error": "x"}\n\n')
    with pytest.raises(streams.StreamBroken, match="over 64 KiB"):
        streams.SseTokens(lambda n: None).feed(b"data: " + b"x" * (streams.MAX_EVENT + 1))


@pytest.mark.parametrize(
    ("counted", "usage", "done", "receipt", "why"),
    [
        (255, 255, True, None, ""),
        (255, 255, True, 255, ""),
        (254, 255, True, None, "254 token events, the engine generates 255"),
        (255, 256, True, None, "usage says 256 completion tokens"),
        (255, None, True, None, "usage says None"),
        (255, 255, False, None, "[DONE] missing"),
        (255, 255, True, 250, "the receipt counts 250 output tokens"),
    ],
)
def test_a_whole_answer_must_count_the_engines_tokens_everywhere(
    counted: int, usage: int | None, done: bool, receipt: int | None, why: str
) -> None:
    found = streams.check(255, counted, usage, done, receipt)
    assert (found == "") if not why else (why in found)


def run(tokens: int, window: float, **changes: Any) -> dict[str, Any]:
    base = {
        "streams": 64, "window_s": window, "tokens_in_window": tokens,
        "cpu_s": {"gateway": 0.5, "agent": 0.8, "engine": 0.6, "client": 0.4},
        "core_busy_s": {"0": 0.6, "1": 2.0},
        "streams_checked": 10, "tokens_checked": 2550, "expected_per_stream": 255,
        "bad_streams": 0, "first_bad": "", "ttft_ms": [50.0, 60.0], "gap_ms": [30.0, 31.0, 90.0],
    }  # fmt: skip
    return base | changes


def test_rounds_merge_into_cpu_microseconds_per_streamed_token() -> None:
    row = paced.merge([run(25_000, 10.0), run(15_000, 10.0, bad_streams=1, first_bad="x")], 64,
                      SETTINGS)  # fmt: skip
    assert (row["tokens_in_window"], row["window_s"], row["tok_s"]) == (40_000, 20.0, 2000.0)
    assert row["offered_tok_s"] == 64 * 32
    assert row["cpu_us_per_token"] == {"gateway": 25.0, "agent": 40.0, "engine": 30.0,
                                       "client": 20.0}  # fmt: skip
    assert row["cpu_util"]["agent"] == 0.08 and row["core_busy"] == {"0": 0.06, "1": 0.2}
    assert (row["bad_streams"], row["first_bad"], row["streams_checked"]) == (1, "x", 20)
    assert row["gap_ms"]["max"] == 90.0 and row["ttft_ms"]["p50"] == 60.0
    assert paced.merge([run(0, 10.0)], 64, SETTINGS)["cpu_us_per_token"]["gateway"] is None
    with pytest.raises(ValueError):
        paced.merge([], 64, SETTINGS)


def test_the_goals_are_issue_16s_per_token_limits() -> None:
    row = paced.merge([run(100_000, 10.0)], 64, SETTINGS)  # gateway 5, agent 8 µs per token
    worse = paced.merge([run(10_000, 10.0)], 128, SETTINGS)  # gateway 50, agent 80
    found = paced.verdicts({"plain": {"64": row}, "gateway": {"64": row, "128": worse}})
    said = {(r["goal"].split()[0], r["mode"], r["streams"]): r["pass"] for r in found}
    assert said == {
        ("gateway", "plain", 64): True, ("gateway", "gateway", 64): True,
        ("gateway", "gateway", 128): False, ("agent", "gateway", 64): True,
        ("agent", "gateway", 128): False,
    }  # fmt: skip


def test_the_paced_options_choose_streams_rate_and_window(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["sealed.py", "--paced"])
    assert sealed.parse_args().settings == sealed.PACED
    argv = ["sealed.py", "--paced", "--streams", "8,256", "--tokens-per-s", "50", "--seconds", "3"]
    monkeypatch.setattr(sys, "argv", argv)
    chosen = sealed.parse_args().settings
    assert (chosen.streams, chosen.tokens_per_s, chosen.seconds) == ((8, 256), 50, 3)
    for bad in (["--streams", "0"], ["--streams", "a,b"], ["--tokens-per-s", "0"]):
        monkeypatch.setattr(sys, "argv", ["sealed.py", "--paced", *bad])
        with pytest.raises(SystemExit):
            sealed.parse_args()
    assert "--paced" in capsys.readouterr().err


def test_the_ledger_must_meter_every_checked_answer_with_the_engines_tokens(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        for n, (model, tokens, status) in enumerate(
            [("sim-plain", 255, ""), ("sim-plain", 255, ""), ("sim-gateway", 255, "valid"),
             ("sim-gateway", 254, "valid"), ("sim-client", 255, "missing")]
        ):  # fmt: skip
            db.execute(
                "INSERT INTO ledger_usage VALUES (?, 'h', 'a', ?, 'p', 'e', 'u', 1, ?, 1, 1, 0, "
                "1.0, NULL, 200, 'ok', 1, 0, 0, 0, ?, NULL, NULL, '', NULL)",
                (f"r{n}", model, tokens, status),
            )
    found = ledger.read_tokens(path, 255)
    assert found["sim-plain"] == {
        "records": 2, "ok": 2, "output_tokens": 510, "not_expected": 0, "valid": 0,
    }  # fmt: skip
    assert ledger.agrees(found["sim-plain"], 2, 510, sealed=False) == ""
    assert "records / ok / output tokens 2 / 2 / 510" in ledger.agrees(
        found["sim-plain"], 3, 765, sealed=False
    )
    assert "1 not of the engine's length" in ledger.agrees(
        found["sim-gateway"], 2, 509, sealed=True
    )
    assert ledger.agrees(found["sim-client"], 1, 255, sealed=True) == (
        "0 valid receipts for 1 answers"
    )
    assert ledger.agrees(None, 1, 255, sealed=False) == "no records"


def test_one_answer_lasts_its_tokens_at_the_pace() -> None:
    assert SETTINGS.answer_s(255) == pytest.approx(0.05 + 254 / 32)


@pytest.mark.timeout(180)
def test_a_short_paced_run_reports_per_token_cpu_and_the_engines_token_counts(
    tmp_path: Path,
) -> None:
    argv = [sys.executable, str(BENCH / "sealed.py"), "--paced", "--streams", "3"]
    argv += ["--tokens-per-s", "200", "--ttft-ms", "10", "--seconds", "1", "--rounds", "1"]
    done = subprocess.run(
        [*argv, "--out", str(tmp_path)], capture_output=True, text=True, timeout=170, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "sealed-paced.json").read_text())
    engine = paced.engine_answer(doc["settings"]["prompt_variant"])  # what the engine sends
    assert doc["settings"]["completion_tokens"] == engine.completion_tokens == 255
    for mode in ("plain", "gateway", "client"):
        row = doc["results"][mode]["3"]
        for process in ("gateway", "agent"):
            assert row["cpu_us_per_token"][process] is not None, (mode, process, row)
            assert row["cpu_us_per_token"][process] >= 0
        assert row["bad_streams"] == 0, row["first_bad"]
        assert row["streams_checked"] >= 3
        assert row["tokens_checked"] == row["streams_checked"] * engine.completion_tokens
        assert 0 < row["tokens_in_window"] <= row["tokens_checked"]
    for mode, row in doc["ledger"].items():  # the gateway metered what the clients counted
        assert row["problem"] == "", (mode, row)
        assert row["metered"]["output_tokens"] == row["tokens"] > 0
    md = (tmp_path / "sealed-paced.md").read_text()
    assert md.startswith("# Sealed-mode benchmark, paced engine")
    assert "**gateway CPU µs per streamed token**" in md and "## 3 concurrent streams" in md
    assert pacedreport.render(doc) == md


def test_the_notes_say_when_the_gateways_core_was_shared_or_the_pace_was_missed() -> None:
    row = paced.merge([run(15_000, 10.0, core_busy_s={"0": 6.0, "1": 2.0})], 64, SETTINGS)
    doc = {
        "results": {"gateway": {"64": row}},
        "cores": {"gateway": 0, "load": 1},
        "machine": {"load_before": "0.10 0.10 0.10"},
        "versions": {"teeroute": "abc"},
    }
    said = pacedreport.observations(doc)
    assert said == [
        "gateway / 64 streams: core 0 was also busy 0.55 with processes other than the gateway "
        "(a shared machine)",
        "gateway / 64 streams: 1,500 tok/s received of 2,048 offered: the system fell behind "
        "the pace (see the busy cores), so events were late and reads coalesced",
    ]
    quiet = paced.merge([run(20_000, 10.0)], 64, SETTINGS)
    assert pacedreport.observations(doc | {"results": {"plain": {"64": quiet}}}) == []
