"""The overload benchmark's numbers per phase, its verdicts and its Markdown page."""

from __future__ import annotations

import json
import statistics
from typing import Any

from overloadbench.load import Samples


def window(samples: Samples, start: float, end: float) -> dict[str, Any]:
    """The probe's statuses and admitted latency, and the gateway's peak RSS, in [start, end)."""
    seen = [(s, ms) for t, s, ms in samples.probe if start <= t < end]
    ok = sorted(ms for s, ms in seen if s == 200)
    statuses: dict[str, int] = {}
    for s, _ in seen:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    rss = [mb for t, mb in samples.rss if start <= t < end]
    return {
        "probe_statuses": statuses,
        "admitted_n": len(ok),
        "admitted_p50_ms": round(statistics.median(ok), 1) if ok else None,
        "admitted_p99_ms": round(ok[min(len(ok) - 1, int(len(ok) * 0.99))], 1) if ok else None,
        "rss_peak_mb": round(max(rss), 1) if rss else None,
    }


def recovery_s(samples: Samples, quiet: tuple[float, float], normal_ms: float) -> float | None:
    """Seconds from the load drop (the start of `quiet`, the unloaded window) to the first
    probe request after which every request of the window is answered 200 within 3x the
    normal (1x) median latency."""
    dropped_at, end = quiet
    after = [(t, s, ms) for t, s, ms in samples.probe if dropped_at <= t < end]
    good_from = None
    for t, s, ms in after:
        if s == 200 and ms <= 3 * normal_ms:
            good_from = t if good_from is None else good_from
        else:
            good_from = None
    return round(good_from - dropped_at, 2) if good_from is not None else None


def _verdict(
    goal: str, value: float | None, target: float, at_least: bool = False
) -> dict[str, Any]:
    met = value is not None and (value >= target if at_least else value <= target)
    return {"goal": goal, "value": value, "target": target, "met": met}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def verdicts(phases: dict[str, Any]) -> list[dict[str, Any]]:
    w10, cut = phases["10x"]["wrk"], phases["slowloris"]["attack"]["cut_off"]
    admitted = _ratio(phases["10x"]["admitted_p99_ms"], phases["1x"]["admitted_p99_ms"])
    served = _ratio(phases["slowloris"]["wrk"]["rps_200"], phases["1x"]["wrk"]["rps_200"])
    return [
        _verdict(
            "recovery within seconds once load drops (s)", phases["recovery"]["recovery_s"], 5
        ),
        _verdict("gateway peak RSS (MiB)", phases["rss_peak_mb"], 250),
        _verdict("admitted p99 at 10x / at 1x", admitted, 3),
        _verdict("503s without Retry-After at 10x", w10["bare503"], 0),
        _verdict(
            "10x: answers other than 200/503, socket errors", w10["other"] + w10["socket_errors"], 0
        ),
        _verdict("slow heads: longest open before 408 (s)", cut["head"].get("longest_open_s"), 30),
        _verdict("slow bodies: longest open before 408 (s)", cut["body"].get("longest_open_s"), 30),
        _verdict("1x throughput under slowloris / without", served, 0.8, at_least=True),
    ]


PHASE_HEAD = [
    "| phase | wrk connections | 200/s | 200 | 503 | 503 without Retry-After | 429 | 408 "
    "| other + socket errors | probe statuses | admitted p50 / p99 ms (probe) | peak RSS MiB |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
]
WRK_CELLS = ("connections", "rps_200", "s200", "s503", "bare503", "s429", "s408")


def _phase_row(name: str, ph: dict[str, Any]) -> str:
    w = ph.get("wrk")
    cells = [*(w[c] for c in WRK_CELLS), w["other"] + w["socket_errors"]] if w else ["-"] * 8
    latency = f"{ph['admitted_p50_ms']} / {ph['admitted_p99_ms']} (n={ph['admitted_n']})"
    rest = [json.dumps(ph["probe_statuses"]), latency, ph["rss_peak_mb"]]
    return "| " + " | ".join(str(c) for c in [name, *cells, *rest]) + " |"


def _intro(doc: dict[str, Any]) -> list[str]:
    m = doc["machine"]
    return [
        "# Gateway under overload and slowloris",
        "",
        f"{doc['date']}, commit {doc['commit']}, {m['cpus']} CPUs ({m['cpu_model']}), load "
        f"average before {m['load_before']}, after {m['load_after']}. {doc['placement']}.",
        "",
        f"Gateway settings: {json.dumps(doc['settings'])} (others at their defaults, "
        "docs/gateway-limits.md); upstream: the engine simulator, 100 ms to first token; "
        f"each phase {doc['phase_seconds']} s. `{doc['command']}`",
    ]


def _notes(p: dict[str, Any]) -> list[str]:
    attack = p["slowloris"]["attack"]
    return [
        f"Recovery: {p['recovery']['recovery_s']} s from the end of the 10x load until every "
        "probe request was answered 200 within 3x the 1x median latency.",
        "",
        f"Slowloris: {attack['head_connections']} connections trickling a head and "
        f"{attack['body_connections']} trickling a body (one byte a second, reconnecting when cut "
        f"off), while wrk sent the 1x load; how they ended: {json.dumps(attack['cut_off'])} "
        "(`408`: answered 408 and closed; `closed`: closed without an answer; connections "
        "still open when the phase ended are not counted). Bodies are cut at "
        "`bodyReadTimeoutS` (10 s here), heads at `requestHeadTimeoutS` (10 s, the default).",
        "",
        "Capacity is the 200/s of the `capacity` phase; 10x sends ten times its connections, "
        "each retrying at once (Retry-After ignored). The probe is a client like the others: "
        "at 10x most of its requests are refused too, so its admitted latency there rests on "
        "few samples (n). The gateway ran alone on its core; wrk, the simulator, the probe and "
        "the slow clients shared the other, so on this 2-core machine the load generators, "
        "not only the gateway, limit the 10x and slowloris phases.",
    ]


def markdown(doc: dict[str, Any]) -> str:
    lines = [*_intro(doc), "", "## Verdicts", "", "| goal | measured | target | met |"]
    lines.append("|---|---|---|---|")
    for v in doc["verdicts"]:
        met = "yes" if v["met"] else "**NO**"
        lines.append(f"| {v['goal']} | {v['value']} | {v['target']} | {met} |")
    lines += ["", "## Phases", "", *PHASE_HEAD]
    for name in ("capacity", "1x", "10x", "recovery", "slowloris"):
        lines.append(_phase_row(name, doc["phases"][name]))
    return "\n".join([*lines, "", *_notes(doc["phases"])]) + "\n"
