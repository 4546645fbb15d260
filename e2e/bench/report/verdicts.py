"""One target's row in RESULTS.md: what was asked, what was measured, met or not, and where from.

The benchmarks record their goals as `checks`: a list of objects with `goal`, `value`, `unit`
(optional), `pass` (true, false, or null when that run did not measure it) and the keys that
say whose number it is (`target`, `mode`, `streams`). `check_rows` turns any such list into
rows; the result files of issue 17 follow the same convention.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

MET = "met"
NOT_MET = "**not met**"
NOT_MEASURED = "not yet measured"
NOT_IN_FILE = "not in the file"
CI_TEST = "a CI test"
NOT_RUN = "not run"

# How the benchmarks name the sealed modes, and how RESULTS.md says them.
MODE_NAMES = {"plain": "plain", "gateway": "gateway-sealed", "client": "client-sealed"}
# How the gateway benchmark names what it measures (`target`).
TARGET_NAMES = {"direct": "direct", "gateway": "teeroute", "litellm": "LiteLLM"}


@dataclass(frozen=True)
class Row:
    goal: str
    who: str
    measured: str
    verdict: str
    source: str


def verdict(passed: object) -> str:
    if passed is True:
        return MET
    if passed is False:
        return NOT_MET
    return NOT_RUN


def number(value: object) -> str:
    """A measured number as RESULTS.md prints it: grouped thousands, about three digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000):
        return f"{value:,.0f}"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if size >= 0.01 or size == 0 else f"{value:.2g}"


def measured(value: object, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "x":
        return f"{number(value)}x"
    return f"{number(value)} {unit}".strip()


def goal_rows(
    data: Mapping[str, Any], source: str, *, who_names: Mapping[str, str] | None = None
) -> list[Row]:
    """Rows from every list of goals a result file holds, whichever of the three shapes the
    benchmarks use: `checks` (above), `verdicts` (`goal`, `value`, `target` the upper limit,
    `met`) and `targets` (`target` the goal, `measured`, `limit` the upper limit, `met`)."""
    entries = _list(data.get("checks"))
    entries += [_from_verdict(e) for e in _list(data.get("verdicts"))]
    entries += [_from_target(e) for e in _list(data.get("targets"))]
    return check_rows(entries, source, who_names=who_names)


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _limited(goal: object, limit: object, value: object, met: object) -> object:
    """The goal with its limit; the direction is the one under which the file's own verdict
    holds (≤ where both or neither do: the usual case, a cost or a latency)."""
    if not isinstance(goal, str) or not _real(limit):
        return goal
    sign = "≤"
    if _real(value) and isinstance(met, bool):
        at_most, at_least = value <= limit, value >= limit
        sign = "≥" if met == at_least and met != at_most else "≤"
    return f"{goal} ({sign} {limit:,g})"


def _real(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _from_verdict(entry: object) -> object:
    if not isinstance(entry, Mapping):
        return entry
    value, met = entry.get("value"), entry.get("met")
    goal = _limited(entry.get("goal"), entry.get("target"), value, met)
    return {"goal": goal, "value": value, "pass": met}


def _from_target(entry: object) -> object:
    if not isinstance(entry, Mapping):
        return entry
    value, met = entry.get("measured"), entry.get("met")
    goal = _limited(entry.get("target"), entry.get("limit"), value, met)
    return {"goal": goal, "value": value, "pass": met}


def check_rows(
    checks: object, source: str, *, who_names: Mapping[str, str] | None = None
) -> list[Row]:
    """Rows from a benchmark's `checks` list; entries that are not objects with a goal are
    skipped (a malformed entry never becomes a row that says met)."""
    if not isinstance(checks, list):
        return []
    return [
        _check_row(check, source, who_names or {})
        for check in checks
        if isinstance(check, Mapping) and isinstance(check.get("goal"), str)
    ]


def _check_row(check: Mapping[str, Any], source: str, who_names: Mapping[str, str]) -> Row:
    goal = str(check["goal"])
    unit = str(check.get("unit") or ("µs" if "µs" in goal else ""))
    return Row(
        goal=goal,
        who=_who(check, who_names),
        measured=measured(check.get("value"), unit),
        verdict=verdict(check.get("pass")),
        source=source,
    )


def _who(check: Mapping[str, Any], who_names: Mapping[str, str]) -> str:
    parts = [str(check[key]) for key in ("case", "scenario") if key in check]
    if "target" in check:
        parts.insert(0, TARGET_NAMES.get(str(check["target"]), str(check["target"])))
    if isinstance(check.get("mode"), str):
        parts.append(who_names.get(check["mode"], check["mode"]))
    if isinstance(check.get("streams"), int):
        parts.append(f"{check['streams']} streams")
    return ", ".join(parts)


def ratio_row(
    goal: str, who: str, value: float | None, limit: float, source: str, *, at_most: bool = False
) -> Row:
    """A row for a ratio the benchmark recorded but did not check against this goal: met when
    it is at least `limit` (or, `at_most`, at most `limit`)."""
    if value is None:
        return Row(goal, who, "—", NOT_RUN, source)
    passed = value <= limit if at_most else value >= limit
    return Row(goal, who, measured(value, "x"), verdict(passed), source)


def pending(goals: Iterable[str], source: str, *, committed: bool = False) -> list[Row]:
    """The targets a result file will hold once it is committed (or, `committed`, should have
    held: the file is there but checks none of them)."""
    state = NOT_IN_FILE if committed else NOT_MEASURED
    return [Row(goal, "", "—", state, source) for goal in goals]
