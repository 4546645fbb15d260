"""Every target with its measured number, met or not, grouped by the issue that set it.

Issue 17's operator, fault and overload targets come from result files other benchmarks write
(`operator-scale`, `operator-churn`, `faults`, `overload`): until one is committed its targets
read "not yet measured". Issue 16's instant- and fast-engine targets are ratios the sealed
benchmarks record but do not check themselves; they are checked here, from those numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from report.sources import Source
from report.verdicts import (
    CI_TEST,
    MET,
    MODE_NAMES,
    NOT_IN_FILE,
    NOT_MEASURED,
    NOT_MET,
    NOT_RUN,
    Row,
    goal_rows,
    measured,
    pending,
    ratio_row,
)

# Issue 17's targets, as its text states them, for the files that will measure them.
OPERATOR_SCALE = (
    "MinerPool apply → attested traffic-ready ≤ 5 s (small pool)",
    "500 MinerPools converge ≤ 60 s",
    "steady-state apiserver writes ≤ 1/s per 100 endpoints",
    "sweep of 1,000 endpoints at a 60 s interval ≤ 0.2 core",
    "operator RSS ≤ 250 MB",
)
OPERATOR_CHURN = ("50 random operator restarts during churn: converge, no orphans, no duplicates",)
FAULTS = (
    "faults under load (gateway kill -9, Redis lost, PostgreSQL restarted): each delivered "
    "answer in the ledger once, charged what the client was told",
    "no hold leak after a restart",
)
OVERLOAD = (
    "slowloris, oversized headers/bodies, 10x overload: 408/413/429/503 with Retry-After",
    "bounded memory under overload; recovery within seconds once load drops",
)
# Issue 17's targets whose proof is a test in CI (a failure fails CI), not a result file.
CI_TESTS = (
    ("gateway kill -9 under load: ledger reconciled with receipts, no hold leak, no double charge",
     "tests/gateway/test_faults_gateway_kill.py"),
    ("50 random operator restarts during churn (a shorter run): converge, no orphans",
     "tests/operator/test_restarts.py"),
    ("apiserver and etcd restart: recovery without manual action; the gateway serves its last "
     "inventory until leases expire, then fails closed",
     "tests/sandbox/test_controlplane_restart.py"),
    ("PostgreSQL restart and Redis loss under load: documented 503s, zero lost usage records",
     "tests/gateway/test_faults_backends.py"),
    ("gateway kill -9 with client-sealed answers: none whole without its usage record",
     "tests/gateway/test_faults_client_sealed.py"),
    ("a miner that dies, hangs mid-stream or answers garbage (before or mid-stream): ejected, "
     "clean error, billed once",
     "tests/gateway/test_faults_miners.py"),
    ("schemathesis against /openapi.json: no status ≥ 500, every error OpenAI-shaped",
     "tests/gateway/test_openapi_fuzz.py"),
    ("property-based fuzzing of evidence parsers, sealed envelope, frames, receipts: typed errors",
     "tests/fuzz/"),
    ("slowloris, oversized heads and bodies (also over TLS), 10x overload: 408/413/431/503, "
     "bounded time", "tests/gateway/test_gateway_pressure.py"),
    ("one key past maxInFlightPerKey: 429 with Retry-After while other keys are served",
     "tests/gateway/test_key_concurrency.py"),
    ("steady state: apiserver writes only on change or when an expiry must move",
     "tests/operator/test_steady_writes.py"),
    ("EndpointSlices sharded at 100 endpoints", "tests/operator/test_sharded_slices.py"),
)  # fmt: skip
CHURN_RESTARTS = 50
SWEEP_INTERVAL_S = 60.0
SWEEP_CORE_LIMIT = 0.2


@dataclass(frozen=True)
class Group:
    title: str
    rows: tuple[Row, ...]


def groups(sources: Mapping[str, Source]) -> list[Group]:
    return [
        Group("Issue 17: operator at scale", tuple(_operator(sources))),
        Group("Issue 17: faults", tuple(_faults(sources))),
        Group("Issue 17: hostile input and overload", tuple(_from(sources, "overload", OVERLOAD))),
        Group("Issue 17: tests in CI", tuple(Row(g, "", "—", CI_TEST, t) for g, t in CI_TESTS)),
        Group("Issue 16: sealing's cost", tuple(_issue16(sources))),
        Group("Issue 5: the gateway against direct and LiteLLM", tuple(_issue5(sources))),
        Group(
            "Issue 6: sealed / plain ≥ 0.9x (superseded by issue 16's targets)",
            tuple(_checks(sources, "sealed")),
        ),
    ]


def tally(all_groups: list[Group]) -> dict[str, int]:
    """How many rows have each verdict, most decisive first; verdicts no row has are left out."""
    found = Counter(row.verdict for group in all_groups for row in group.rows)
    order = (MET, NOT_MET, NOT_MEASURED, NOT_IN_FILE, NOT_RUN, CI_TEST)
    return {verdict: found[verdict] for verdict in order if found[verdict]}


def said(counted: dict[str, int]) -> str:
    """`tally` in words: "23 met, 28 not met, 12 not yet measured"."""
    words = {MET: "met", NOT_MET: "not met", CI_TEST: "CI tests"}
    return ", ".join(f"{n} {words.get(v, v)}" for v, n in counted.items())


def _checks(sources: Mapping[str, Source], name: str) -> list[Row]:
    source = sources.get(name)
    if source is None or source.data is None:
        return []
    return goal_rows(source.data, source.file, who_names=MODE_NAMES)


def _from(sources: Mapping[str, Source], name: str, goals: tuple[str, ...]) -> list[Row]:
    rows = _checks(sources, name)
    source = sources.get(name)
    committed = source is not None and source.present
    return rows if rows else pending(goals, f"{name}.json", committed=committed)


def _operator(sources: Mapping[str, Source]) -> list[Row]:
    rows = _from(sources, "operator-scale", OPERATOR_SCALE)
    sweep = sources.get("sweep")
    if sweep is not None and sweep.data is not None:
        rows.append(sweep_row(sweep.data, sweep.file))
    return rows


def sweep_row(data: Mapping[str, Any], source: str) -> Row:
    """Issue 17's sweep target from the attestation sweep benchmark: operator CPU seconds of
    one sweep over 1,000 endpoints, spread over the 60 s interval."""
    rounds = [r for r in data.get("rounds", []) if isinstance(r, Mapping)]
    cpu = [float(r["operator_cpu_s"]) for r in rounds if "operator_cpu_s" in r]
    endpoints = {int(r["endpoints"]) for r in rounds if "endpoints" in r}
    if not cpu or not endpoints:
        return Row(OPERATOR_SCALE[3], "attestation sweep", "—", NOT_RUN, source)
    per_1000 = fmean(cpu) * 1000 / max(endpoints)
    core = per_1000 / SWEEP_INTERVAL_S
    text = (
        f"{measured(core, 'core')} ({per_1000:.2f} CPU-s per sweep; "
        "verification and slice only, no apiserver writes)"
    )
    return Row(OPERATOR_SCALE[3], "attestation sweep", text, _met(core <= SWEEP_CORE_LIMIT), source)


def _met(passed: bool) -> str:
    return MET if passed else NOT_MET


def _faults(sources: Mapping[str, Source]) -> list[Row]:
    rows = _checks(sources, "faults")
    faults = sources.get("faults")
    if not rows and faults is not None and faults.data is not None:
        rows = fault_rows(faults.data, faults.file)
    if not rows:
        rows = _from(sources, "faults", FAULTS)
    churn = sources.get("operator-churn")
    if not _checks(sources, "operator-churn") and churn is not None and churn.data is not None:
        return [*rows, churn_row(churn.data, churn.file)]
    return rows + _from(sources, "operator-churn", OPERATOR_CHURN)


def fault_rows(data: Mapping[str, Any], source: str) -> list[Row]:
    """`e2e/bench/faults.py` records no checks: per ledger backend, its targets are met when
    the books reconcile (no problem found) and no hold is left after the restarts."""
    rows = []
    for run in data.get("runs") or []:
        if not isinstance(run, Mapping) or not isinstance(run.get("problem_count"), int):
            continue
        who, problems, holds = (
            str(run.get("backend", "")),
            run["problem_count"],
            run.get("holds_left"),
        )
        books = f"{run.get('delivered')} delivered, {problems} problems"
        rows.append(Row(FAULTS[0], who, books, _met(problems == 0), source))
        held = f"{holds} holds left" if isinstance(holds, int) else "—"
        rows.append(Row(FAULTS[1], who, held, _met(holds == 0) if held != "—" else NOT_RUN, source))
    return rows


def churn_row(data: Mapping[str, Any], source: str) -> Row:
    """`e2e/bench/operatorchurn.py` records no checks: its target is met when at least 50
    restarts ran and everything converged after the last one (nothing left wrong)."""
    restarts, converged = data.get("restarts"), data.get("converged")
    if not isinstance(restarts, int) or not isinstance(converged, bool):
        return Row(OPERATOR_CHURN[0], "", "—", NOT_RUN, source)
    left = data.get("problems_left") or []
    text = f"{restarts} restarts; " + (
        f"converged {data.get('converge_s')} s after the last"
        if converged
        else f"not converged, {len(left)} problems left"
    )
    return Row(OPERATOR_CHURN[0], "", text, _met(converged and restarts >= CHURN_RESTARTS), source)


def _issue16(sources: Mapping[str, Source]) -> list[Row]:
    rows = _checks(sources, "sealed-paced") + _checks(sources, "sealed-fast")
    fast = sources.get("sealed-fast")
    if fast is not None and fast.data is not None:
        rows += fast_ratio_rows(fast.data, fast.file)
    sealed = sources.get("sealed")
    if sealed is not None and sealed.data is not None:
        rows += instant_rows(sealed.data, sealed.file)
    return rows


def fast_ratio_rows(data: Mapping[str, Any], source: str) -> list[Row]:
    """Fast engine: sealed / plain streamed tokens/s ≥ 0.9x, per mode and stream count."""
    results = data.get("results", {})
    plain = results.get("plain", {})
    rows = []
    for mode in ("gateway", "client"):
        for streams, run in sorted(results.get(mode, {}).items(), key=lambda kv: int(kv[0])):
            base = plain.get(streams, {}).get("tok_s")
            ratio = run["tok_s"] / base if base else None
            who = f"{MODE_NAMES[mode]}, {streams} streams"
            rows.append(
                ratio_row("fast engine: sealed / plain tokens/s ≥ 0.9x", who, ratio, 0.9, source)
            )
    return rows


# Issue 16's instant-engine targets: (goal, kind, what is compared, limit).
INSTANT = (
    ("instant engine: gateway CPU per sealed request ≤ 1.25x plain's, short whole answers",
     "max", "cpu", 1.25),
    ("instant engine: gateway CPU per sealed request ≤ 1.25x plain's, 255-token streams",
     "streamed_long_max", "cpu", 1.25),
    ("instant engine: end-to-end sealed / plain ≥ 0.9x, short whole answers",
     "non_streamed", "throughput", 0.9),
    ("instant engine: end-to-end sealed / plain ≥ 0.95x, 255-token streams",
     "streamed_long", "throughput", 0.95),
)  # fmt: skip


def instant_rows(data: Mapping[str, Any], source: str) -> list[Row]:
    results, comparison = data.get("results", {}), data.get("comparison", {})
    rows = []
    for goal, key, what, limit in INSTANT:
        for mode in ("gateway", "client"):
            if what == "cpu":
                ratio = _cpu_ratio(results, mode, key)
            else:
                ratio = comparison.get(mode, {}).get(key, {}).get("throughput_ratio")
            row = ratio_row(goal, MODE_NAMES[mode], ratio, limit, source, at_most=what == "cpu")
            rows.append(row)
    return rows


def _cpu_ratio(results: Mapping[str, Any], mode: str, scenario: str) -> float | None:
    try:
        sealed = results[mode][scenario]["cpu_ms_per_request"]["gateway"]
        plain = results["plain"][scenario]["cpu_ms_per_request"]["gateway"]
    except KeyError:
        return None
    return float(sealed) / float(plain) if plain else None


def _issue5(sources: Mapping[str, Source]) -> list[Row]:
    """Our gateway's goals (LiteLLM's own rows are in the gateway section, not targets); the
    soak's checks where the 10-minute soak measured them."""
    rows = [r for r in _checks(sources, "gateway") if r.who == "teeroute"]
    soak = [r for r in _checks(sources, "gateway-soak") if r.verdict in (MET, NOT_MET)]
    return rows + soak
