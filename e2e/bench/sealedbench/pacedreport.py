"""The paced scenario's outputs: `sealed-paced.json` (every run, each round included) and
`sealed-paced.md` (per stream count, a metric x mode table with CPU µs per streamed token of
the gateway and the agent, then issue 16's per-token goals, the machine and the layout).
`render` is pure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gatewaybench import host
from gatewaybench.report import Getter, show

from sealedbench.modes import MODES

HEADS = " | ".join(mode.label for mode in MODES)
ROWS: tuple[tuple[str, Getter], ...] = (
    ("tokens/s received (offered: streams x rate)", show(
        "{:,.0f} ({:,.0f})", ("tok_s",), ("offered_tok_s",))),
    ("**gateway CPU µs per streamed token**", show("{:.1f}", ("cpu_us_per_token", "gateway"))),
    ("**agent CPU µs per streamed token**", show("{:.1f}", ("cpu_us_per_token", "agent"))),
    ("engine CPU µs per token", show("{:.1f}", ("cpu_us_per_token", "engine"))),
    ("clients (this harness) CPU µs per token", show("{:.1f}", ("cpu_us_per_token", "client"))),
    ("gateway / agent CPU (1.0 = a core)", show(
        "{:.2f} / {:.2f}", ("cpu_util", "gateway"), ("cpu_util", "agent"))),
    ("busy core 0 / core 1", show("{:.2f} / {:.2f}", ("core_busy", "0"), ("core_busy", "1"))),
    ("time to first token p50 / p99 ms", show(
        "{:.1f} / {:.1f}", ("ttft_ms", "p50"), ("ttft_ms", "p99"))),
    ("gap between a stream's reads that brought tokens p50 / p99 / max ms", show(
        "{:.1f} / {:.1f} / {:.1f}", ("gap_ms", "p50"), ("gap_ms", "p99"), ("gap_ms", "max"))),
    ("tokens in the window / window s", show(
        "{:,} / {:.1f}", ("tokens_in_window",), ("window_s",))),
    ("answers checked whole / their tokens / broken", show(
        "{} / {:,} / {}", ("streams_checked",), ("tokens_checked",), ("bad_streams",))),
)  # fmt: skip


def _table(doc: dict[str, Any], streams: int) -> list[str]:
    views = {m.name: doc["results"].get(m.name, {}).get(str(streams), {}) for m in MODES}
    lines = [
        f"## {streams} concurrent streams",
        "",
        f"| metric | {HEADS} |",
        "|---" * (len(MODES) + 1) + "|",
    ]
    for label, get in ROWS:
        cells = [get(views[m.name]) or "—" for m in MODES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _goals(doc: dict[str, Any]) -> list[str]:
    lines = ["| goal | mode | streams | measured µs | verdict |", "|---|---|---|---|---|"]
    for row in doc["checks"]:
        verdict = {True: "pass", False: "**miss**", None: "not measured"}[row["pass"]]
        value = "—" if row["value"] is None else f"{row['value']:.1f}"
        lines.append(f"| {row['goal']} | {row['mode']} | {row['streams']} | {value} | {verdict} |")
    return lines


def _ledger(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| mode | answers checked by the clients / their tokens | ledger records / `ok` / "
        "output tokens | receipts `valid` | agrees |",
        "|---|---|---|---|---|",
    ]
    labels = {m.name: m.label for m in MODES}
    for mode, row in doc.get("ledger", {}).items():
        m = row["metered"] or {}
        agrees = "yes" if not row["problem"] else f"**no**: {row['problem']}"
        lines.append(
            f"| {labels.get(mode, mode)} | {row['answers']} / {row['tokens']:,} | "
            f"{m.get('records', 0)} / {m.get('ok', 0)} / {m.get('output_tokens', 0):,} | "
            f"{m.get('valid', 0)} | {agrees} |"
        )
    return lines


def render(doc: dict[str, Any]) -> str:
    facts = host.fact_lines(doc, f"layout: {doc['layout']}")
    notes = [f"- {note}" for note in doc["notes"]] or ["- none"]
    s = doc["settings"]
    return "\n".join(
        [
            f"# Sealed-mode benchmark, paced engine ({doc['when']})",
            "",
            f"`{doc['command']}`",
            "",
            f"The engine simulator paced at {s['tokens_per_s']:g} tokens/s per stream "
            f"(time to first token {s['ttft_ms']:g} ms), one SSE event per token; each stream "
            f"asks for {s['max_tokens']} tokens to a {s['prompt_tokens']}-token prompt and "
            f"gets {s['completion_tokens']} (the engine's longest answer). CPU per streamed "
            "token = a process's CPU seconds in the measured window / the tokens the clients "
            "received in it.",
            "",
            *(line for n in s["streams"] for line in _table(doc, n)),
            "## Tokens metered by the gateway's ledger (all runs)",
            "",
            *_ledger(doc),
            "",
            "## Goals (issue 16: the per-token path)",
            "",
            *_goals(doc),
            "",
            "## Setup",
            "",
            *facts,
            "",
            "## Notes",
            "",
            *notes,
            "",
        ]
    )


def setup_notes(settings: dict[str, Any]) -> list[str]:
    return [
        f"engine: the engine simulator (`--ttft-ms {settings['ttft_ms']:g} --tokens-per-s "
        f"{settings['tokens_per_s']:g}`, one worker): each token its own write, as an "
        "engine's steps",
        "agent, gateway and the three modes as in sealed.md (one gateway, three Routes on the "
        "attested agent: `sealing: off`, `gateway`, `required`); client-sealed requests go in "
        "one client session with the enclave per run (wire v2, opened through the gateway "
        "before the streams start), each sealed by its stream just before it is sent",
        "clients: in this harness (asyncio + httptools, one keep-alive connection per stream); "
        "each stream asks for answer after answer; the streams start staggered over one "
        "answer's length, the measured window opens once all are in flight, and every answer "
        "still in flight when it closes is finished and checked",
        "every answer is checked whole: its token events, its usage and (client-sealed) its "
        "receipt (tagged with the client session's key) must all count the tokens the "
        "engine's generator gives the prompt; client-sealed chunks are opened in order",
        f"each run's window {settings['seconds']:g} s, {settings['rounds']} round(s) (modes in "
        "turn per stream count, the order reversed in odd rounds); tok/s is the median over "
        "the rounds, CPU per token over all of them; CPU seconds from /proc/<pid>/stat "
        "(utime + stime) of each process tree, the clients' from this process, busy time per "
        "core from /proc/stat",
    ]


def _shared(mode: str, streams: str, row: dict[str, Any], core: int | None) -> list[str]:
    """The gateway's core busier than the gateway: another tenant shared it."""
    util = (row.get("cpu_util") or {}).get("gateway")
    busy = (row.get("core_busy") or {}).get(str(core))
    if util is None or busy is None or busy - util <= 0.1:
        return []
    return [
        f"{mode} / {streams} streams: core {core} was also busy {busy - util:.2f} with "
        "processes other than the gateway (a shared machine)"
    ]


def observations(doc: dict[str, Any]) -> list[str]:
    said = []
    for mode, by_streams in doc["results"].items():
        for streams, row in by_streams.items():
            if row["bad_streams"]:
                said.append(
                    f"**{mode} / {streams} streams: {row['bad_streams']} broken answers** "
                    f"(first: {row['first_bad'][:160]})"
                )
            said += _shared(mode, streams, row, doc["cores"]["gateway"])
            if row["tok_s"] < 0.9 * row["offered_tok_s"]:
                said.append(
                    f"{mode} / {streams} streams: {row['tok_s']:,.0f} tok/s received of "
                    f"{row['offered_tok_s']:,.0f} offered: the system fell behind the pace "
                    "(see the busy cores), so events were late and reads coalesced"
                )
    load = doc["machine"].get("load_before", "").split()
    if load and float(load[0]) > 0.5:
        said.append(
            f"load average {load[0]} before the run: other work on the machine may have "
            "shared the cores (see the busy row)"
        )
    if "dirty" in str(doc["versions"].get("teeroute", "")):
        said.append("the working tree had uncommitted changes when this ran")
    return said


def write(out: Path, doc: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "sealed-paced.json", out / "sealed-paced.md"
    json_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(render(doc))
    return json_path, md_path
