"""How the PostgreSQL ledger's worker threads run a batch of operations (see worker.py).

Two kinds of operation. Steps (the hot path: reserve, settle, release, account lookups) go
to the server as one `SELECT ledger_v4_run(steps)`: the whole batch in one statement, one
round trip, one commit (see postgres_schema). Steps are sent in account order, so concurrent
batches lock accounts in the same order and cannot deadlock. Statements (administration,
reports) run one by one; each ledger operation is atomic on its own, so a batch needs no
transaction around it. The connection is in autocommit mode.

If the batch function fails (a constraint violated by one step), its steps are rerun one per
call, so only the faulty one fails. If the connection is lost, steps are sent once more on a
new one (they are idempotent: a repeated reserve finds its hold, a repeated settle or release
finds it gone); statements are not (a repeated credit would count twice): they fail, and the
next batch connects afresh.
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
        steps = {n: op for n, op in enumerate(operations) if isinstance(op, Step)}
        outcomes: dict[int, Outcome] = {}
        try:
            outcomes.update(zip(steps, self._steps(list(steps.values())), strict=True))
            for n, op in enumerate(operations):
                if isinstance(op, Statement):
                    outcomes[n] = _run_statement(self._connection(), op)
        except (psycopg.Error, LedgerError) as error:  # the database is out of reach
            self.close()
            failed = (False, error if isinstance(error, LedgerError) else _wrap(error))
            return [outcomes.get(n, failed) for n in range(len(operations))]
        return [outcomes[n] for n in range(len(operations))]

    def _steps(self, steps: list[Step[Any]]) -> list[Outcome]:
        """Every step is idempotent (a reserve by its hold id), so when the connection turns
        out to be dead — as after a database restart — they are sent again on a new one."""
        try:
            return _run_steps(self._connection(), steps)
        except psycopg.Error as error:
            log.warning("ledger connection lost (%s); reconnecting", error)
            self.close()
            return _run_steps(self._connection(), steps)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            self._conn = connect(self._url)
        return self._conn

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
    row = conn.execute("SELECT ledger_v4_run(%s::jsonb)::text", (payload,)).fetchone()
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
    # Only the server's primary message, which names tables and constraints: its DETAIL can
    # quote the row's values. orjson's messages name no value.
    if isinstance(error, psycopg.Error):
        what = f"{error.sqlstate or 'connection'}: {error.diag.message_primary or error}"
    else:
        what = f"encoding: {error}"
    wrapped = LedgerError(f"ledger database error ({what})")
    wrapped.__cause__ = error
    return wrapped
