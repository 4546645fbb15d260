"""What the gateway's SQLite ledger recorded, per public model: records by outcome and
receipt verdict (`ledger_usage`, gateway/src/teeroute_gateway/ledger/sqlite_ops.py). Read
after the gateway stopped, so every settled request is in the file. `tally` is pure."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gatewaybench.procs import BenchError

QUERY = (
    "SELECT public_model, outcome, receipt_status, count(*) FROM ledger_usage "
    "GROUP BY public_model, outcome, receipt_status"
)
CANCELLED = "cancelled"  # the client left mid-answer: wrk closing its connections at the end


def read(path: Path) -> list[tuple[str, str, str, int]]:
    if not path.exists():
        raise BenchError(f"no ledger at {path}")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [(str(m), str(o), str(r), int(n)) for m, o, r, n in db.execute(QUERY)]


def tally(
    rows: Iterable[tuple[str, str, str, int]], model: str, completed: int, sealed: bool
) -> dict[str, Any]:
    """One mode's records. `completed`: requests the clients (wrk and the probes) saw answered
    200 and checked; each has a record, and for a sealed mode each must be `valid`. Records
    of requests wrk cut off when a run ended (outcome `cancelled`) are counted apart."""
    by: dict[str, int] = {}
    records = valid = cancelled = 0
    flagged: dict[str, int] = {}
    for public_model, outcome, status, count in rows:
        if public_model != model:
            continue
        records += count
        by[f"{outcome}/{status or '-'}"] = by.get(f"{outcome}/{status or '-'}", 0) + count
        if outcome == CANCELLED:
            cancelled += count
        elif status == "valid":
            valid += count
        elif sealed or status:
            flagged[status or "none"] = flagged.get(status or "none", 0) + count
    answered = records - cancelled
    return {
        "records": records,
        "by_outcome_and_receipt": dict(sorted(by.items())),
        "cancelled": cancelled,
        "valid": valid,
        "flagged": flagged,
        "completed_by_clients": completed,
        # sealed: records of answered requests without a valid receipt, plus answered
        # requests with no record at all; plain: records missing
        "problems": (
            sum(flagged.values()) + max(0, completed - valid)
            if sealed
            else max(0, completed - answered) + sum(flagged.values())
        ),
    }


def summary(
    rows: Iterable[tuple[str, str, str, int]],
    models: Mapping[str, tuple[str, int, bool]],
) -> dict[str, dict[str, Any]]:
    """{mode: tally} for {mode: (public model, requests completed, sealed)}."""
    rows = list(rows)
    return {mode: tally(rows, *spec) for mode, spec in models.items()}
