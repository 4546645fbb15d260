"""The benchmark's outputs: `gateway.json` (everything measured, samples included) and
`gateway.md` (the table a reader needs: target x metric, the goals with pass/miss, the machine
and how the cores were shared). `render` is pure."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatewaybench import host

TARGETS = ("direct", "gateway", "litellm")

Getter = Callable[[dict[str, Any]], str | None]


def _dig(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def show(fmt: str, *paths: tuple[str, ...]) -> Getter:
    """A cell from one or more values of a target's results; None when one is missing."""

    def get(result: dict[str, Any]) -> str | None:
        values = [_dig(result, path) for path in paths]
        return None if None in values else fmt.format(*values)

    return get


ROWS: tuple[tuple[str, Getter], ...] = (
    ("moderate load: achieved req/s", show("{:.0f}", ("moderate", "rps"))),
    ("moderate load: p50 ms", show("{:.2f}", ("moderate", "p50_ms"))),
    ("moderate load: p99 ms", show("{:.2f}", ("moderate", "p99_ms"))),
    ("**added p50 ms** (vs direct)", show("{:.2f}", ("added", "p50_ms"))),
    ("**added p99 ms** (vs direct)", show("{:.2f}", ("added", "p99_ms"))),
    ("**max req/s** (64 connections)", show("{:.0f}", ("throughput", "rps"))),
    (
        "max load: p50 / p99 ms",
        show("{:.1f} / {:.1f}", ("throughput", "p50_ms"), ("throughput", "p99_ms")),
    ),
    (
        "max load: CPU of the target (1.0 = a core)",
        show("{:.2f}", ("throughput", "target_cpu_util")),
    ),
    (
        "max load: other processes on its core (0 = quiet)",
        show("{:.2f}", ("throughput", "other_on_core")),
    ),
    ("max load: requests per CPU-second", show("{:.0f}", ("throughput", "requests_per_cpu_s"))),
    ("streams/s (16 connections)", show("{:.0f}", ("streamed", "rps"))),
    ("completion tokens per stream (usage)", show("{}", ("streamed", "tokens_per_stream"))),
    ("**streamed tokens/s**", show("{:.0f}", ("streamed", "tokens_per_s"))),
    ("streamed: tokens per CPU-second", show("{:.0f}", ("streamed", "tokens_per_cpu_s"))),
    ("soak: seconds / requests", show("{:.0f} / {}", ("soak", "seconds"), ("soak", "requests"))),
    (
        "soak RSS MB: start / end / max",
        show(
            "{:.1f} / {:.1f} / {:.1f}",
            ("soak", "rss", "start_mb"),
            ("soak", "rss", "end_mb"),
            ("soak", "rss", "max_mb"),
        ),
    ),
    (
        "**soak RSS slope MB/min** (after warm-up)",
        show("{:.2f}", ("soak", "rss", "slope_mb_per_min")),
    ),
    ("errors (non-200, bad stream, socket)", show("{}", ("errors",))),
)


def cell(result: dict[str, Any] | None, get: Getter) -> str:
    if not result or not result.get("available"):
        return "n/a"
    return get(result) or "—"


def verdict_text(row: dict[str, Any]) -> str:
    if row["pass"] is None:
        return "not run"
    value = row["value"]
    shown = f"{value:,.2f}" if isinstance(value, float) and abs(value) < 100 else f"{value:,.0f}"
    return f"{'**pass**' if row['pass'] else '**miss**'} ({shown} {row['unit']})"


def render(doc: dict[str, Any]) -> str:
    results = doc["results"]
    head = "| metric | " + " | ".join(TARGETS) + " |"
    lines = [head, "|---" * (len(TARGETS) + 1) + "|"]
    lines += [
        f"| {label} | " + " | ".join(cell(results.get(t), get) for t in TARGETS) + " |"
        for label, get in ROWS
    ]
    goals = ["| goal | target | verdict |", "|---|---|---|"]
    goals += [f"| {r['goal']} | {r['target']} | {verdict_text(r)} |" for r in doc["checks"]]
    facts = host.fact_lines(doc, f"pinning: {doc['pinning']}")
    notes = [f"- {note}" for note in doc["notes"]] or ["- none"]
    return "\n".join(
        [
            f"# Gateway benchmark ({doc['when']}, {doc['profile']} profile)",
            "",
            f"`{doc['command']}`",
            "",
            *lines,
            "",
            "## Goals",
            "",
            *goals,
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


def write(out: Path, doc: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "gateway.json", out / "gateway.md"
    json_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(render(doc))
    return json_path, md_path
