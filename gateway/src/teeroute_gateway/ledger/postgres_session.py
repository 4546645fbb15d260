"""How the PostgreSQL ledger's worker threads run a batch of operations (see worker.py).

Two kinds of operation. Steps (the hot path: reserve, settle, release, account lookups) go
to the server as one `SELECT ledger_v1_run(steps)`: the whole batch in one statement, one
round trip, one commit (see postgres_schema). Steps are sent in account order, so concurrent
batches lock accounts in the same order and cannot deadlock. Statements (administration,
reports) run one by one; each ledger operation is atomic on its own, so a batch needs no
transaction around it. The connection is in autocommit mode.

If the batch function fails (a constraint violated by one step), its steps are rerun one per
call, so only the faulty one fails. A lost connection fails what had not run (a retry could
repeat a commit that did happen); the next batch connects afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, LiteralString, TypeVar

import orjson
import psycopg

from .errors import LedgerError
from .worker import Outcome

T = TypeVar("T")
Rows = list[tuple[Any, ...]]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step(Generic[T]):
    """One operation of the batch function: its JSON step, and how to read its result."""

    step: Mapping[str, Any]
    decode: Callable[[Any], T]
    order: str = ""  # the account it locks: batches lock accounts in this order


@dataclass(frozen=True)
class Statement(Generic[T]):
    """One operation as its own SQL statement, and how to read its rows."""

    sql: LiteralString
    params: Sequence[Any]
    decode: Callable[[Rows], T]


Operation = Step[Any] | Statement[Any]


def connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.Error as error:
        raise LedgerError(f"cannot connect to the ledger database: {error}") from error


class PostgresSession:
    def __init__(self, url: str, connection: psycopg.Connection[Any] | None = None) -> None:
        self._url = url
        self._conn = connection

    def run(self, operations: Sequence[Operation]) -> list[Outcome]:
        try:
            conn = self._conn = self._conn or connect(self._url)
        except LedgerError as error:  # fail fast while the database is unreachable
            return [(False, error)] * len(operations)
        steps = {n: op for n, op in enumerate(operations) if isinstance(op, Step)}
        outcomes: dict[int, Outcome] = {}
        try:
            outcomes.update(zip(steps, _run_steps(conn, list(steps.values())), strict=True))
            for n, op in enumerate(operations):
                if isinstance(op, Statement):
                    outcomes[n] = _run_statement(conn, op)
        except psycopg.Error as error:  # the connection is lost (others are outcomes)
            self.close()
            return [outcomes.get(n, (False, _wrap(error))) for n in range(len(operations))]
        return [outcomes[n] for n in range(len(operations))]

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _run_steps(conn: psycopg.Connection[Any], steps: list[Step[Any]]) -> list[Outcome]:
    if not steps:
        return []
    order = sorted(range(len(steps)), key=lambda n: steps[n].order)
    try:
        results = _call(conn, [steps[n].step for n in order])
    except (psycopg.Error, orjson.JSONEncodeError) as error:  # e.g. a value no column holds
        if conn.broken or conn.closed:
            raise
        if len(steps) == 1:
            return [(False, _wrap(error))]
        log.info("ledger batch of %d failed (%s); rerunning it step by step", len(steps), error)
        return [_run_steps(conn, [step])[0] for step in steps]
    by_step = dict(zip(order, results, strict=True))
    return [_decoded(steps[n].decode, by_step[n]) for n in range(len(steps))]


def _call(conn: psycopg.Connection[Any], steps: list[Mapping[str, Any]]) -> list[Any]:
    # orjson writes the steps (dataclasses and datetimes included) and reads the results
    # faster than psycopg's JSON adapters.
    payload = orjson.dumps(steps).decode()
    row = conn.execute("SELECT ledger_v1_run(%s::jsonb)::text", (payload,)).fetchone()
    results = orjson.loads(row[0]) if row else None
    if not isinstance(results, list) or len(results) != len(steps):
        raise LedgerError("the ledger's batch function returned a malformed result")
    return results


def _run_statement(conn: psycopg.Connection[Any], statement: Statement[Any]) -> Outcome:
    try:
        cursor = conn.execute(statement.sql, statement.params)
        rows = cursor.fetchall() if cursor.description else []
    except psycopg.Error as error:
        if conn.broken or conn.closed:
            raise
        return False, _wrap(error)
    return _decoded(statement.decode, rows)


def _decoded(decode: Callable[[Any], Any], result: Any) -> Outcome:
    try:
        return True, decode(result)
    except Exception as error:  # the caller's exception to raise, e.g. InsufficientCredit
        return False, error


def _wrap(error: Exception) -> LedgerError:
    # The server's primary message names tables and constraints, never our parameters:
    # statements carry bound parameters, not interpolated values. orjson's names no value.
    code = error.sqlstate if isinstance(error, psycopg.Error) else "encoding"
    wrapped = LedgerError(f"ledger database error ({code or 'connection'}): {error}")
    wrapped.__cause__ = error
    return wrapped
