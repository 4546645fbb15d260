"""Facts about the machine and the source a benchmark ran on, for its results file."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def output(argv: list[str]) -> str:
    """What a short command printed (stdout, else stderr); empty when it could not run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    return {
        "cpu_model": models[0] if models else platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_before": load_average(),
    }


def commit(root: Path) -> tuple[str, bool]:
    """(short commit of the checkout at `root`, whether it has uncommitted changes)."""
    short = output(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    return short, bool(output(["git", "-C", str(root), "status", "--porcelain"]))


def wrk_version() -> str:
    return (output(["wrk", "-v"]).split() or ["?", "?"])[1]


def two_cores() -> tuple[int, int] | str:
    """The first two cores this process may run on (the target's, the load's), or why
    nothing can be pinned."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return f"only {len(cores)} core available: nothing pinned, numbers shared"
    return cores[0], cores[1]


def fact_lines(doc: dict[str, Any], placement: str) -> list[str]:
    """The results file's facts: machine, versions, where each process ran (`placement`,
    e.g. "layout: ..."), then the setup notes; as Markdown list items."""
    m, v = doc["machine"], doc["versions"]
    return [
        f"- machine: {m['cpu_model']}, {m['cpus']} cores, {m['platform']}; "
        f"load average {m['load_before']} before, {m['load_after']} after",
        f"- Python {m['python']}; " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- {placement}",
        *(f"- {line}" for line in doc["setup_notes"]),
    ]
