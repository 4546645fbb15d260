"""RESULTS.md's plots as PNG bytes, from the result files' numbers.

Deterministic: the Agg canvas, matplotlib's default style (whatever the user's matplotlibrc),
a fixed size and dpi, and no `Software` tag or timestamp in the PNG, so the same result files
give the same bytes. Each function returns None when its result file is missing.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.style
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from report import operator_points
from report.sources import Source

DPI = 100
TARGETS = (("direct", "direct (engine alone)"), ("gateway", "teeroute"), ("litellm", "LiteLLM"))
MODES = (("plain", "plain"), ("gateway", "gateway-sealed"), ("client", "client-sealed"))
PERCENTILES = (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"),
               ("p999_ms", "p99.9"), ("max_ms", "max"))  # fmt: skip

Data = Mapping[str, Any]


def png(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def _figure(width: float, height: float, panels: int) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def gateway_latency(data: Data) -> Figure:
    figure, axes = _figure(10, 4, 2)
    scenarios = (("moderate", "moderate load: 4 connections, 10 ms think time"),
                 ("throughput", "max load: 64 connections"))  # fmt: skip
    for ax, (scenario, title) in zip(axes, scenarios, strict=True):
        for target, label in TARGETS:
            run = data["results"].get(target, {}).get(scenario)
            if run:
                ax.plot([p for _, p in PERCENTILES], [run[k] for k, _ in PERCENTILES],
                        marker="o", label=label)  # fmt: skip
        ax.set(title=title, yscale="log", xlabel="percentile", ylabel="latency (ms, log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    figure.suptitle("Latency distribution, 16-token answers (gateway.json)")
    return figure


# (scenario, connections, label of the point)
CONCURRENCY = (
    ("moderate", 4, "4\n(10 ms think time)"),
    ("soak", 16, "16"),
    ("throughput", 64, "64"),
)


def gateway_throughput(data: Data) -> Figure:
    figure, (ax, streams) = _figure(10, 4, 2)
    for target, label in TARGETS:
        runs = data["results"].get(target, {})
        points = [(i, runs[s]["rps"]) for i, (s, _, _) in enumerate(CONCURRENCY) if s in runs]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set(title="requests/s vs connections", yscale="log",
           xlabel="connections", ylabel="requests/s (log)")  # fmt: skip
    ax.set_xticks(range(len(CONCURRENCY)), [t for _, _, t in CONCURRENCY])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _bars(streams, [(label, data["results"].get(t, {}).get("streamed", {}).get("tokens_per_s"))
                    for t, label in TARGETS])  # fmt: skip
    streams.set(title="streamed tokens/s (16 connections)", yscale="log",
                ylabel="tokens/s (log)")  # fmt: skip
    figure.suptitle("Throughput, target alone on one core (gateway.json)")
    return figure


def _bars(ax: Axes, values: Sequence[tuple[str, float | None]]) -> None:
    shown = [(label, v) for label, v in values if v]
    bars = ax.bar([label for label, _ in shown], [v for _, v in shown])
    ax.bar_label(bars, labels=[f"{v:,.0f}" for _, v in shown])


KINDS = (("max", "16-token\nwhole answers"), ("streamed_max", "16-token\nstreams"),
         ("streamed_long_max", "255-token\nstreams"))  # fmt: skip


def sealed_instant(data: Data) -> Figure:
    figure, (rps, cpu) = _figure(10, 4, 2)
    width = 0.27
    for i, (mode, label) in enumerate(MODES):
        runs = data["results"][mode]
        xs = [k + (i - 1) * width for k in range(len(KINDS))]
        rps.bar(xs, [runs[s]["rps"] for s, _ in KINDS], width, label=label)
        cpu.bar(
            xs, [runs[s]["cpu_ms_per_request"]["gateway"] for s, _ in KINDS], width, label=label
        )
    for ax in (rps, cpu):
        ax.set_xticks(range(len(KINDS)), [label for _, label in KINDS])
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend()
    rps.set(title="max requests/s (64 connections)", ylabel="requests/s")
    cpu.set(title="gateway CPU per request", ylabel="ms")
    figure.suptitle("Sealed vs plain, instant engine (sealed.json)")
    return figure


def sealed_per_token(paced: Data, fast: Data | None, floor: Data | None) -> Figure:
    figure, axes = _figure(10, 4, 2)
    runs = [(f"paced, {s}", paced["results"], s) for s in ("64", "128")]
    if fast is not None:
        runs.append(("fast, 128", fast["results"], "128"))
    width = 0.8 / len(runs)
    for ax, process in zip(axes, ("gateway", "agent"), strict=True):
        for i, (label, results, streams) in enumerate(runs):
            xs = [m + (i - (len(runs) - 1) / 2) * width for m in range(len(MODES))]
            values = [results[mode][streams]["cpu_us_per_token"][process] for mode, _ in MODES]
            ax.bar(xs, values, width, label=f"{label} streams")
        if floor is not None:
            low = min(r["relay_us_per_event"] for r in floor["runs"])
            ax.axhline(low, color="black", linestyle="--", label=f"bare relay floor {low:.1f} µs")
        ax.set_xticks(range(len(MODES)), [label for _, label in MODES])
        ax.set(title=f"{process} CPU per streamed token", ylabel="µs per token")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize="small", loc="upper center", ncols=2)
    figure.suptitle(
        "Sealed vs plain per token (sealed-paced.json, sealed-fast.json, relay-floor.json)"
    )
    return figure


def operator_convergence(data: Data) -> Figure | None:
    points = operator_points.convergence(data)
    if not points:
        return None
    figure, (ax,) = _figure(7, 4, 1)
    ax.plot([p for p, _ in points], [s for _, s in points], marker="o", label="measured")
    ax.axhline(60, color="black", linestyle="--", label="target: 60 s (issue 17: for 500 pools)")
    ax.set(title="Operator convergence vs MinerPool count (operator-scale.json)",
           xlabel="MinerPools converged (all endpoints attested)",
           ylabel="seconds since the first apply")  # fmt: skip
    ax.grid(True, alpha=0.3)
    ax.legend()
    return figure


def render(sources: Mapping[str, Source]) -> dict[str, bytes]:
    """Every plot whose result files are committed, by file name."""
    data = {name: source.data for name, source in sources.items()}
    makers: dict[str, Callable[[], Figure | None]] = {}
    if (gateway := data.get("gateway")) is not None:
        makers["gateway-latency.png"] = lambda: gateway_latency(gateway)
        makers["gateway-throughput.png"] = lambda: gateway_throughput(gateway)
    if (sealed := data.get("sealed")) is not None:
        makers["sealed-instant.png"] = lambda: sealed_instant(sealed)
    if (paced := data.get("sealed-paced")) is not None:
        fast, floor = data.get("sealed-fast"), data.get("relay-floor")
        makers["sealed-per-token.png"] = lambda: sealed_per_token(paced, fast, floor)
    if (scale := data.get("operator-scale")) is not None:
        makers["operator-convergence.png"] = lambda: operator_convergence(scale)
    with matplotlib.style.context("default"):
        figures = {name: make() for name, make in makers.items()}
        return {name: png(f) for name, f in figures.items() if f is not None}
