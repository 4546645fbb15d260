"""The committed result files, loaded, each with the date, commit and machine it records.

The benchmarks were written over several issues and record these facts in different places
(`when` or `date`; `versions.teeroute` or `commit`; `machine` as text or a dict, or `facts`):
`meta` reads every shape, and says "not recorded" where a file has no such fact.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The result files RESULTS.md knows by name, in the order its file table lists them. Any other
# `*.json` in the folder is listed after them and summarised generically.
KNOWN = (
    "gateway",
    "gateway-soak",
    "ledger",
    "limits",
    "attestation",
    "sweep",
    "sealed",
    "sealed-paced",
    "sealed-fast",
    "relay-floor",
    "operator-scale",
    "operator-churn",
    "faults",
    "overload",
)
NOT_RECORDED = "not recorded"

Data = Mapping[str, Any]


class ResultFileError(ValueError):
    """A committed result file that is not a JSON object."""


@dataclass(frozen=True)
class Meta:
    bench: str
    date: str
    commit: str
    machine: str


@dataclass(frozen=True)
class Source:
    """One result file: its data, or None when it is not (yet) committed."""

    name: str
    data: Data | None

    @property
    def present(self) -> bool:
        return self.data is not None

    @property
    def file(self) -> str:
        return f"{self.name}.json"

    def meta(self) -> Meta:
        return meta(self.name, self.data or {})


def load(results: Path, name: str) -> Source:
    path = results / f"{name}.json"
    if not path.is_file():
        return Source(name, None)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultFileError(f"{path.name}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ResultFileError(f"{path.name}: the top level is not an object")
    return Source(name, data)


def load_all(results: Path) -> dict[str, Source]:
    """The known files (present or not), then every other `*.json` there, sorted by name."""
    others = sorted(p.stem for p in results.glob("*.json") if p.stem not in KNOWN)
    return {name: load(results, name) for name in (*KNOWN, *others)}


def meta(name: str, data: Data) -> Meta:
    facts = _mapping(data.get("facts"))
    bench = data.get("bench") or data.get("benchmark") or name
    return Meta(
        bench=str(bench),
        date=_date(data.get("date") or data.get("when") or facts.get("when")),
        commit=_commit(data),
        machine=_machine(data.get("machine"), facts, data),
    )


def _mapping(value: object) -> Data:
    return value if isinstance(value, Mapping) else {}


def _date(value: object) -> str:
    if not isinstance(value, str) or not value:
        return NOT_RECORDED
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _commit(data: Data) -> str:
    """The commit measured; a full hex name shortened to 12 characters, as git shows it."""
    commit = data.get("commit") or _mapping(data.get("versions")).get("teeroute")
    if not commit:
        return NOT_RECORDED
    text = str(commit)
    full = len(text) == 40 and all(c in "0123456789abcdef" for c in text)
    return text[:12] if full else text


def _machine(machine: object, facts: Data, data: Data) -> str:
    if isinstance(machine, str) and machine:
        described = machine
    elif isinstance(machine, Mapping):
        described = _described(machine)
    elif facts:
        described = _described({"cpus": facts.get("cpus"), "arch": facts.get("machine"), **facts})
    else:
        return NOT_RECORDED
    load = _load(_mapping(machine), facts, data)
    return f"{described}; load {load}" if load else described


def _described(machine: Data) -> str:
    parts = [
        str(machine["cpu_model"]) if machine.get("cpu_model") else "",
        f"{machine['cpus']} CPUs" if machine.get("cpus") else "",
        str(machine["arch"]) if machine.get("arch") else "",
        f"Python {machine['python']}" if machine.get("python") else "",
    ]
    return ", ".join(p for p in parts if p) or NOT_RECORDED


def _load(machine: Data, facts: Data, data: Data) -> str:
    """The load average the run saw, from whichever key its benchmark used."""
    if machine.get("load_before"):
        return f"{_loads(machine['load_before'])} before"
    for where in (machine, facts, data):
        for key in ("loadavg", "load_average", "load_average_1m", "load"):
            value = where.get(key)
            if isinstance(value, int | float | str | list) and not isinstance(value, bool):
                return _loads(value)
    return ""


def _loads(value: object) -> str:
    """A load average as recorded: "0.69 1.00 1.34", [0.69, 1.0, 1.34] or 4.64."""
    if isinstance(value, list):
        return " ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in value)
    return str(value)
