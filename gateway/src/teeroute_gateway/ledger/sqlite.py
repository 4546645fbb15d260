"""The ledger on SQLite: one file, shared by the gateway processes of one machine.

For a single-node deployment, development and tests. Two worker threads (worker.py,
sqlite_session) keep SQLite off the event loop: the writer runs every balance-changing
operation, many per `BEGIN IMMEDIATE` transaction; the reader serves lookups from its own
connection in WAL mode. Balance checks happen under SQLite's write lock, so processes sharing
the file cannot overspend.
`sqlite:///:memory:` gives a private in-memory database (one connection does both jobs).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from . import sqlite_ops as ops
from .base import (
    DEFAULT_HOLD_TTL_S,
    Ledger,
    check_amount,
    check_proofs,
    check_record,
    check_request_ids,
    new_account,
    new_hold,
    utc_now,
)
from .errors import LedgerError
from .inflight import completed, hold_or_release
from .keys import hash_key
from .models import Account, Hold, SettlementRow, UsageRecord
from .rows import utc
from .sqlite_session import ReadSession, WriteSession
from .worker import T, Worker

BUSY_TIMEOUT_MS = 10_000
WAL_RETRY_S = 0.005
MEMORY = ":memory:"
Clock = Callable[[], datetime]
Op = Callable[[sqlite3.Connection], T]


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # First, so that a file busy with another process makes us wait instead of failing.
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if path != MEMORY:
        _use_wal(conn)  # readers and the writer never block each other
    conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: no fsync per commit, still consistent
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """WAL is kept in the file, and switching a file to it needs the file to itself. When
    several connections open a file not yet in WAL at once (gateway workers or replicas
    starting together), SQLite answers those that lose the race "database is locked" at
    once, without waiting (waiting could deadlock them): they try again until the winner has
    switched it, for as long as the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            busy = error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(WAL_RETRY_S)


async def _worker(path: str, *, writer: bool) -> Worker[Op[Any]]:
    try:
        connection = await asyncio.to_thread(_connect, path)
    except sqlite3.Error as error:
        raise LedgerError(f"cannot open the ledger database {path}: {error}") from error
    session = WriteSession(connection) if writer else ReadSession(connection)
    return Worker([session], "ledger-writer" if writer else "ledger-reader")


class SqliteLedger(Ledger):
    def __init__(self, path: str, *, clock: Clock = utc_now) -> None:
        self.path = path
        self._clock = clock
        self._writer: Worker[Op[Any]] | None = None
        self._reader: Worker[Op[Any]] | None = None

    async def open(self) -> None:
        if self._writer is not None:
            return
        self._writer = await _worker(self.path, writer=True)
        await self._writer.submit(ops.create_schema)
        if self.path == MEMORY:
            self._reader = self._writer  # another connection would see another database
        else:
            self._reader = await _worker(self.path, writer=False)

    async def close(self) -> None:
        writer, reader, self._writer, self._reader = self._writer, self._reader, None, None
        if writer is not None:
            await writer.stop()
        if reader is not None and reader is not writer:
            await reader.stop()

    def _write(self, op: Op[T]) -> asyncio.Future[T]:
        if self._writer is None:
            raise LedgerError("the ledger is not open")
        return self._writer.submit(op)

    def _read(self, op: Op[T]) -> asyncio.Future[T]:
        if self._reader is None:
            raise LedgerError("the ledger is not open")
        return self._reader.submit(op)

    async def create_key(
        self,
        name: str,
        credit_nano: int,
        spend_limit_nano: int | None = None,
        spend_period: str | None = None,
        currency: str = "USD",
    ) -> tuple[str, Account]:
        key, account = new_account(name, credit_nano, spend_limit_nano, spend_period, currency)
        await self._write(
            partial(ops.insert_account, account=account, key_hash=hash_key(key), now=self._clock())
        )
        return key, account

    async def declare_key(self, key_hash: str, account: Account) -> bool:
        return await self._write(
            partial(ops.insert_account_if_absent, account=account, key_hash=key_hash,
                    now=self._clock())
        )  # fmt: skip

    async def authenticate(self, api_key: str) -> Account | None:
        return await self._read(partial(ops.account_by_key_hash, key_hash=hash_key(api_key)))

    async def account(self, account_id: str) -> Account | None:
        return await self._read(partial(ops.account_by_id, account_id=account_id))

    async def add_credit(self, account_id: str, amount_nano: int) -> Account:
        check_amount(amount_nano)
        op = partial(ops.add_credit, account_id=account_id, amount_nano=amount_nano)
        return await self._write(op)

    async def set_disabled(self, account_id: str, disabled: bool) -> Account:
        return await self._write(
            partial(ops.set_disabled, account_id=account_id, disabled=disabled)
        )

    async def reserve(
        self, account_id: str, amount_nano: int, request_id: str, ttl_s: float = DEFAULT_HOLD_TTL_S
    ) -> Hold:
        now = self._clock()
        hold = new_hold(account_id, amount_nano, request_id, ttl_s, now)
        return await hold_or_release(
            self._write(partial(ops.reserve, hold=hold, now=now)), self.release
        )

    async def settle(self, hold: Hold, record: UsageRecord) -> UsageRecord:
        check_record(hold, record)
        utc(record.created_at)
        op = partial(ops.settle, hold_id=hold.id, record=record, now=self._clock())
        return await completed(self._write(op))

    async def renew(self, hold: Hold, ttl_s: float = DEFAULT_HOLD_TTL_S) -> bool:
        expires = self._clock() + timedelta(seconds=ttl_s)
        return await self._write(partial(ops.renew, hold_id=hold.id, expires_at=expires))

    async def release(self, hold: Hold) -> None:
        await completed(self._write(partial(ops.release, hold_id=hold.id)))

    async def reap(self, now: datetime | None = None) -> int:
        return await self._write(partial(ops.reap, now=utc(now or self._clock())))

    async def usage(self, request_id: str) -> UsageRecord | None:
        return await self._read(partial(ops.usage, request_id=request_id))

    async def usage_records(
        self, start: datetime, end: datetime, limit: int = 1000
    ) -> list[UsageRecord]:
        return await self._read(partial(ops.usage_between, start=start, end=end, limit=limit))

    async def settlement(self, start: datetime, end: datetime) -> list[SettlementRow]:
        return await self._read(partial(ops.settlement, start=utc(start), end=utc(end)))

    async def store_receipt_proofs(self, proofs: Sequence[tuple[str, str]]) -> int:
        checked = check_proofs(proofs)
        if not checked:
            return 0
        op = partial(ops.store_receipt_proofs, proofs=checked, now=self._clock())
        return await self._write(op)

    async def receipt_proof(self, request_id: str) -> str | None:
        return await self._read(partial(ops.receipt_proof, request_id=request_id))

    async def flag_unrooted(self, request_ids: Sequence[str]) -> int:
        checked = check_request_ids(request_ids)
        if not checked:
            return 0
        return await self._write(partial(ops.flag_unrooted, request_ids=checked))
