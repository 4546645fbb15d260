"""RESULTS.md's gateway and sealed-mode sections: plots and the numbers behind them (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from report.sources import Source
from report.tables import table
from report.verdicts import number

PLOTS = "results/plots"
TARGETS = (("direct", "direct"), ("gateway", "teeroute"), ("litellm", "LiteLLM"))
MODES = (("plain", "plain"), ("gateway", "gateway-sealed"), ("client", "client-sealed"))

Data = Mapping[str, Any]


def gateway(source: Source | None) -> str:
    head = "## Gateway: direct vs teeroute vs LiteLLM (`gateway.json`)"
    if source is None or source.data is None:
        return head + "\n\nNot yet measured: `results/gateway.json` is not committed."
    data = source.data
    notes = "\n".join(f"- {n}" for n in data.get("notes", []))
    return "\n\n".join(
        (
            head,
            f"`{data.get('command', '')}`, {data.get('profile', '?')} profile. "
            f"Pinning: {data.get('pinning', 'not recorded')}. "
            "Throughput vs concurrency has three points, one per scenario (4 connections with "
            "10 ms think time, the 16-connection soak, 64 connections): the benchmark measures no "
            "finer sweep.",
            f"![latency distribution]({PLOTS}/gateway-latency.png)",
            f"![throughput vs concurrency]({PLOTS}/gateway-throughput.png)",
            table(("", *[label for _, label in TARGETS]), _gateway_rows(data["results"])),
            "The benchmark's notes:\n\n" + notes if notes else "",
        )
    ).rstrip()


def _gateway_rows(results: Data) -> list[tuple[str, ...]]:
    def row(label: str, scenario: str, key: str) -> tuple[str, ...]:
        return (label, *[_get(results, t, scenario, key) for t, _ in TARGETS])

    return [
        row("moderate load p50 ms", "moderate", "p50_ms"),
        row("moderate load p99 ms", "moderate", "p99_ms"),
        row("max requests/s (64 connections)", "throughput", "rps"),
        row("requests per CPU-second of the target", "throughput", "requests_per_cpu_s"),
        row("streamed tokens/s (16 connections)", "streamed", "tokens_per_s"),
        ("soak RSS MB, start / end", *[_rss(results, t) for t, _ in TARGETS]),
        ("errors", *[number(results.get(t, {}).get("errors", "—")) for t, _ in TARGETS]),
    ]


def _get(results: Data, target: str, scenario: str, key: str) -> str:
    value = results.get(target, {}).get(scenario, {}).get(key)
    return "—" if value is None else number(value)


def _rss(results: Data, target: str) -> str:
    rss = results.get(target, {}).get("soak", {}).get("rss")
    return "—" if not rss else f"{rss['start_mb']:.1f} / {rss['end_mb']:.1f}"


def sealed(sources: Mapping[str, Source]) -> str:
    parts = ["## Sealed vs plain"]
    instant, paced, fast = (sources.get(n) for n in ("sealed", "sealed-paced", "sealed-fast"))
    if instant is not None and instant.data is not None:
        parts += [
            "### Instant engine: per request (`sealed.json`)",
            "The engine answers at once, so the hops are all that is measured: the worst "
            "case for sealing. Max load was limited by core 1 (agent, engine and wrk).",
            f"![sealed vs plain, instant engine]({PLOTS}/sealed-instant.png)",
            table(("max load", *[m for _, m in MODES]), _instant_rows(instant.data["results"])),
        ]
    if paced is not None and paced.data is not None:
        parts += [
            "### Per streamed token (`sealed-paced.json`, `sealed-fast.json`)",
            "Paced: 32 tokens/s per stream, each token its own event (a real engine's steps). "
            "Fast: 500 tokens/s per stream offered, more than the machine serves, so reads "
            "coalesce: the per-token cost's lower bound.",
            f"![sealed vs plain per token]({PLOTS}/sealed-per-token.png)",
            table(
                ("run", "tokens/s", *[f"{m}: gateway / agent µs" for _, m in MODES]),
                _token_rows(paced.data, None if fast is None else fast.data),
            ),
        ]
    else:
        parts.append("Per-token results: not yet measured (`sealed-paced.json`).")
    return "\n\n".join(parts)


def _instant_rows(results: Data) -> list[tuple[str, ...]]:
    kinds = (
        ("max", "16-token whole answers"),
        ("streamed_max", "16-token streams"),
        ("streamed_long_max", "255-token streams"),
    )
    rows = []
    for scenario, label in kinds:
        runs = [results[m][scenario] for m, _ in MODES]
        rows.append((f"{label}: req/s", *[number(r["rps"]) for r in runs]))
        gw = [f"{r['cpu_ms_per_request']['gateway']:.3f}" for r in runs]
        rows.append((f"{label}: gateway CPU ms/request", *gw))
    return rows


def _token_rows(paced: Data, fast: Data | None) -> list[tuple[str, ...]]:
    runs = [("paced", paced, s) for s in sorted(paced["results"]["plain"], key=int)]
    if fast is not None:
        runs += [("fast", fast, s) for s in sorted(fast["results"]["plain"], key=int)]
    rows = []
    for label, data, streams in runs:
        results = data["results"]
        cells = [_per_token(results[m][streams]["cpu_us_per_token"]) for m, _ in MODES]
        tok_s = " / ".join(number(results[m][streams]["tok_s"]) for m, _ in MODES)
        rows.append((f"{label}, {streams} streams", tok_s, *cells))
    return rows


def _per_token(cost: Data) -> str:
    return f"{cost['gateway']:.1f} / {cost['agent']:.1f}"
