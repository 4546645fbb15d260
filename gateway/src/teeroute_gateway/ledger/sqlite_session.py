"""How the SQLite ledger's worker threads run a batch of operations (see worker.py).

The writer runs a whole batch in one `BEGIN IMMEDIATE` transaction: SQLite's single write
lock is held from the first read, so each operation reads, decides and writes with no other
process in between, and the batch costs one commit. An operation that refuses (raises a
LedgerError such as InsufficientCredit) must do so before it writes anything (sqlite_ops
keeps to that), so a refusal needs no rollback. Any other exception — a database error, a
value SQLite cannot store — may come after some writes: it rolls the batch back and reruns
its operations one transaction each, so only the operation at fault fails. The reader runs
lookups one by one outside any transaction: in WAL mode they never wait for the writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from .errors import LedgerError
from .worker import Outcome

Op = Callable[[sqlite3.Connection], Any]


class WriteSession:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection

    def run(self, operations: Sequence[Op]) -> list[Outcome]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:  # still locked by another process after busy_timeout
            return [(False, _wrap(error))] * len(operations)
        try:
            return self._finish([_refusal_or_result(self._conn, op) for op in operations])
        except Exception as error:
            if self._conn.in_transaction:  # some errors end the transaction themselves
                self._conn.execute("ROLLBACK")
            if len(operations) == 1:
                return [(False, _wrap(error) if isinstance(error, sqlite3.Error) else error)]
            return [self.run([op])[0] for op in operations]

    def _finish(self, outcomes: list[Outcome]) -> list[Outcome]:
        self._conn.execute("COMMIT")
        return outcomes

    def close(self) -> None:
        self._conn.close()


class ReadSession:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection

    def run(self, operations: Sequence[Op]) -> list[Outcome]:
        outcomes = []
        for op in operations:
            try:
                outcomes.append(_refusal_or_result(self._conn, op))
            except sqlite3.Error as error:
                outcomes.append((False, _wrap(error)))
            except Exception as error:
                outcomes.append((False, error))
        return outcomes

    def close(self) -> None:
        self._conn.close()


def _refusal_or_result(conn: sqlite3.Connection, op: Op) -> Outcome:
    """The operation's result, or its refusal for the caller; other exceptions propagate
    (the operation may have written part of its changes)."""
    try:
        return True, op(conn)
    except LedgerError as refusal:
        return False, refusal


def _wrap(error: sqlite3.Error) -> LedgerError:
    # SQLite's messages hold no parameters, so no key or content can leak through them.
    wrapped = LedgerError(f"ledger database error: {error}")
    wrapped.__cause__ = error
    return wrapped
