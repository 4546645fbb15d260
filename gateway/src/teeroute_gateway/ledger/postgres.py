"""The ledger on PostgreSQL: one database shared by every gateway replica.

Operations are built by postgres_sql and run by worker threads (worker.py, postgres_session),
which send whatever is queued as one call of the batch function (postgres_schema): one round
trip and one commit for the lot. Balance checks happen in the database, in conditional
UPDATEs, so replicas never overspend whatever their number. Two connections by default: one
batch can run while the next gathers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from . import postgres_sql as sql
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
from .postgres_schema import create_schema
from .postgres_session import Operation, PostgresSession, Statement, Step, connect
from .rows import utc
from .worker import T, Worker

RESERVE_ATTEMPTS = 5
log = logging.getLogger(__name__)


class PostgresLedger(Ledger):
    def __init__(
        self, url: str, *, clock: Callable[[], datetime] = utc_now, connections: int = 2
    ) -> None:
        self._url = url
        self._clock = clock
        self._connections = connections
        self._worker: Worker[Operation] | None = None

    async def open(self) -> None:
        if self._worker is not None:
            return
        await asyncio.to_thread(_create_schema, self._url)
        sessions = []
        for _ in range(self._connections):  # connect now: a wrong URL fails here, not later
            sessions.append(PostgresSession(self._url, await asyncio.to_thread(connect, self._url)))
        self._worker = Worker(sessions, "ledger-postgres")

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.stop()

    def _run(self, operation: Step[T] | Statement[T]) -> asyncio.Future[T]:
        if self._worker is None:
            raise LedgerError("the ledger is not open")
        return self._worker.submit(operation)

    async def create_key(
        self,
        name: str,
        credit_nano: int,
        spend_limit_nano: int | None = None,
        spend_period: str | None = None,
        currency: str = "USD",
    ) -> tuple[str, Account]:
        key, account = new_account(name, credit_nano, spend_limit_nano, spend_period, currency)
        await self._run(sql.insert_account(account, hash_key(key), self._clock()))
        return key, account

    async def declare_key(self, key_hash: str, account: Account) -> bool:
        return await self._run(sql.insert_account_if_absent(account, key_hash, self._clock()))

    async def authenticate(self, api_key: str) -> Account | None:
        return await self._run(sql.account_by_key_hash(hash_key(api_key)))

    async def account(self, account_id: str) -> Account | None:
        return await self._run(sql.account_by_id(account_id))

    async def add_credit(self, account_id: str, amount_nano: int) -> Account:
        check_amount(amount_nano)
        return await self._run(sql.add_credit(account_id, amount_nano))

    async def set_disabled(self, account_id: str, disabled: bool) -> Account:
        return await self._run(sql.set_disabled(account_id, disabled))

    async def reserve(
        self, account_id: str, amount_nano: int, request_id: str, ttl_s: float = DEFAULT_HOLD_TTL_S
    ) -> Hold:
        for _ in range(RESERVE_ATTEMPTS):
            now = self._clock()
            hold = new_hold(account_id, amount_nano, request_id, ttl_s, now)
            granted = await hold_or_release(self._run(sql.reserve(hold, now)), self.release)
            if granted is not None:
                return granted
        raise LedgerError("could not reserve: the account kept changing; try again")

    async def settle(self, hold: Hold, record: UsageRecord) -> UsageRecord:
        check_record(hold, record)
        utc(record.created_at)
        settled = await completed(self._run(sql.settle(hold, record, self._clock())))
        if settled is not None:
            return settled
        return await self._settle_unheld(hold, record)

    async def _settle_unheld(self, hold: Hold, record: UsageRecord) -> UsageRecord:
        """The hold was settled, released or reaped already: never charge without a hold."""
        existing = await self.usage(record.request_id)
        if existing is not None:
            return existing
        log.warning(
            "request %s settled after its hold was gone: recorded, not charged", record.request_id
        )
        unpaid = await self._run(sql.insert_unpaid(hold.id, record))
        return unpaid or await self.usage(record.request_id) or record

    async def renew(self, hold: Hold, ttl_s: float = DEFAULT_HOLD_TTL_S) -> bool:
        return await self._run(sql.renew(hold.id, self._clock() + timedelta(seconds=ttl_s)))

    async def release(self, hold: Hold) -> None:
        await completed(self._run(sql.release(hold.id, hold.account_id)))

    async def reap(self, now: datetime | None = None) -> int:
        # Hold by hold through the batch function, in account order like everything else,
        # rather than one sweeping statement that could deadlock with the batches.
        expired = await self._run(sql.expired_holds(utc(now or self._clock())))
        released = await asyncio.gather(
            *(self._run(sql.release(hold_id, account_id)) for hold_id, account_id in expired)
        )
        return sum(released)

    async def usage(self, request_id: str) -> UsageRecord | None:
        return await self._run(sql.usage(request_id))

    async def usage_records(
        self, start: datetime, end: datetime, limit: int = 1000
    ) -> list[UsageRecord]:
        return await self._run(sql.usage_between(utc(start), utc(end), limit))

    async def settlement(self, start: datetime, end: datetime) -> list[SettlementRow]:
        return await self._run(sql.settlement(utc(start), utc(end)))

    async def store_receipt_proofs(self, proofs: Sequence[tuple[str, str]]) -> int:
        checked = check_proofs(proofs)
        if not checked:
            return 0
        return await self._run(sql.store_receipt_proofs(checked, self._clock()))

    async def receipt_proof(self, request_id: str) -> str | None:
        return await self._run(sql.receipt_proof(request_id))

    async def flag_unrooted(self, request_ids: Sequence[str]) -> int:
        checked = check_request_ids(request_ids)
        if not checked:
            return 0
        return await self._run(sql.flag_unrooted(checked))


def _create_schema(url: str) -> None:
    with connect(url) as conn:
        create_schema(conn)
