"""What the gateway's SQLite ledger recorded, per public model: records by outcome and
receipt verdict (`ledger_usage`, gateway/src/teeroute_gateway/ledger/sqlite_ops.py). Read
after the gateway stopped, so every settled request is in the file. `tally` is pure. For the
paced scenario, `read_tokens` and `agrees`: the output tokens metered per model against the
answers and tokens its clients checked."""

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


TOKENS_QUERY = (
    "SELECT public_model, count(*), sum(outcome = 'ok'), sum(output_tokens), "
    "sum(output_tokens != ?), sum(receipt_status = 'valid') FROM ledger_usage "
    "GROUP BY public_model"
)


def read_tokens(path: Path, expected: int) -> dict[str, dict[str, int]]:
    """Per public model: records, those `ok`, output tokens metered, records whose output
    tokens are not `expected`, receipts `valid` (the paced scenario's cross-check)."""
    if not path.exists():
        raise BenchError(f"no ledger at {path}")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(TOKENS_QUERY, (expected,)).fetchall()
    names = ("records", "ok", "output_tokens", "not_expected", "valid")
    return {str(row[0]): dict(zip(names, map(int, row[1:]), strict=True)) for row in rows}


def agrees(metered: Mapping[str, int] | None, streams: int, tokens: int, sealed: bool) -> str:
    """Why the ledger of one mode disagrees with what its clients checked ("" if it agrees):
    a record per answer, each `ok` with the engine's tokens (sealed: a `valid` receipt)."""
    if not metered:
        return "no records"
    found = (metered["records"], metered["ok"], metered["output_tokens"])
    if found != (streams, streams, tokens) or metered["not_expected"]:
        return (
            f"records / ok / output tokens {found[0]} / {found[1]} / {found[2]}, "
            f"{metered['not_expected']} not of the engine's length; the clients checked "
            f"{streams} answers of {tokens} tokens"
        )
    if sealed and metered["valid"] != streams:
        return f"{metered['valid']} valid receipts for {streams} answers"
    return ""
