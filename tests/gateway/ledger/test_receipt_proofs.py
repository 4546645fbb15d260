"""Wire v2 receipt proofs in the ledger, on SQLite and on a real PostgreSQL: each request's
inclusion proof (a proof bundle the SDK's RootTracker made) is stored verbatim and read back
still verifying; receipts no signed root covered in time are flagged "unrooted" (counted in
the settlement, their charge left as settled); a database of the first schema gains the proofs
table when a new gateway opens it."""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from teeroute.sealing.roots import verify_bundle
from teeroute_gateway.ledger import (
    FLAGGED_RECEIPTS,
    Ledger,
    SettlementRow,
    hash_key,
    open_ledger,
)
from teeroute_gateway.ledger.base import account_for

from ...sealing.test_receipt_mac import Enclave, batch, tracker_for
from ..pg import PostgresServer
from .conftest import BACKENDS, Clock, query, usage_record
from .old_schema import V1_POSTGRES_FUNCTIONS, V1_POSTGRES_TABLES, V1_SQLITE_SCHEMA

pytestmark = pytest.mark.anyio
DAY = datetime(2025, 6, 15, tzinfo=UTC)


def real_proofs(count: int) -> tuple[Enclave, dict[str, str]]:
    """{request id: proof bundle} for a batch signed by a real enclave key."""
    enclave = Enclave(batch_size=count)
    tracker = tracker_for(enclave)
    return enclave, dict(tracker.on_root(batch(enclave, tracker, 0, count), enclave.signing_sha))


@pytest.fixture
async def funded(ledger: Ledger) -> Ledger:
    """The ledger, with the account `settle` charges."""
    await ledger.declare_key(hash_key("sk-team-a"), account_for("sk-team-a", "team-a", 10**6,
                                                                None, None, "USD"))  # fmt: skip
    return ledger


async def settle(ledger: Ledger, request_id: str, status: str, **fields: Any) -> None:
    account = await ledger.authenticate("sk-team-a")
    assert account is not None
    hold = await ledger.reserve(account.id, 2_000, request_id)
    receipt = None if status in ("", "missing") else '{"v":2}'
    record = usage_record(account.id, request_id, receipt_status=status, receipt=receipt, **fields)
    await ledger.settle(hold, record)


async def status_of(ledger: Ledger, request_id: str) -> str:
    record = await ledger.usage(request_id)
    assert record is not None
    return record.receipt_status


async def test_proofs_are_stored_verbatim_and_still_verify(funded: Ledger, ledger_url: str) -> None:
    enclave, proofs = real_proofs(4)
    assert await funded.store_receipt_proofs(list(proofs.items())) == 4
    for request_id, text in proofs.items():
        stored = await funded.receipt_proof(request_id)
        assert stored == text
        assert verify_bundle(stored, enclave.signing_sha).request_id == request_id
    assert await funded.receipt_proof("req-unknown") is None
    assert query(ledger_url, "SELECT count(*) FROM ledger_receipt_proofs") == [(4,)]


async def test_a_requests_first_proof_is_kept(funded: Ledger) -> None:
    _, proofs = real_proofs(2)
    _, others = real_proofs(2)
    assert await funded.store_receipt_proofs([("req-0", proofs["req-0"])]) == 1
    assert await funded.store_receipt_proofs(list(others.items())) == 1  # only req-1 is new
    assert await funded.receipt_proof("req-0") == proofs["req-0"]
    assert await funded.receipt_proof("req-1") == others["req-1"]
    assert await funded.store_receipt_proofs([]) == 0


async def test_receipts_without_a_root_in_time_are_flagged_and_counted(funded: Ledger) -> None:
    _, proofs = real_proofs(1)
    for request_id, status in [("req-0", "valid"), ("req-late", "valid"), ("req-m", "missing"),
                               ("req-i", "invalid"), ("req-plain", "")]:  # fmt: skip
        await settle(funded, request_id, status, pool="pool-a", cost_nano=500)
    await funded.store_receipt_proofs(list(proofs.items()))  # req-0 is covered

    everyone = ["req-0", "req-late", "req-m", "req-i", "req-plain", "req-never-settled"]
    assert await funded.flag_unrooted(everyone) == 1
    statuses = {rid: await status_of(funded, rid) for rid in everyone[:-1]}
    assert statuses == {"req-0": "valid", "req-late": "unrooted", "req-m": "missing",
                        "req-i": "invalid", "req-plain": ""}  # fmt: skip
    assert await funded.flag_unrooted(everyone) == 0  # once

    flagged = await funded.usage("req-late")
    assert flagged is not None and flagged.charged_nano == 500  # the charge stands
    end = DAY + timedelta(days=1)
    assert await funded.settlement(DAY, end) == [
        SettlementRow("pool-a", DAY, end, 5, 500, 250, 2_500, "USD", flagged=3,
                      claimed_nano=2_500),
    ]  # fmt: skip
    assert "unrooted" in FLAGGED_RECEIPTS


async def test_a_proof_that_comes_after_the_flag_makes_the_record_valid_again(
    funded: Ledger,
) -> None:
    _, proofs = real_proofs(1)
    await settle(funded, "req-0", "valid")
    assert await funded.flag_unrooted(["req-0"]) == 1
    assert await funded.store_receipt_proofs(list(proofs.items())) == 1
    assert await status_of(funded, "req-0") == "valid"


async def test_a_proof_may_come_before_its_usage_record(funded: Ledger) -> None:
    # A root can arrive on another answer while this request is still being settled.
    _, proofs = real_proofs(1)
    assert await funded.store_receipt_proofs(list(proofs.items())) == 1
    await settle(funded, "req-0", "valid")
    assert await funded.flag_unrooted(["req-0"]) == 0
    assert await status_of(funded, "req-0") == "valid"


@pytest.mark.parametrize(
    "proofs",
    [[("req-1", "a\x00b")], [("req-1", "\ud800")], [("req-1", b"{}")], [("", "{}")],
     [("req-1", "x" * (64 * 1024 + 1))], [(None, "{}")]],
)  # fmt: skip
async def test_proofs_neither_backend_could_store_are_refused_before_any_write(
    funded: Ledger, proofs: list[tuple[Any, Any]]
) -> None:
    with pytest.raises(ValueError):
        await funded.store_receipt_proofs([("req-0", "{}"), *proofs])
    assert await funded.receipt_proof("req-0") is None


async def test_flag_unrooted_wants_a_list_of_ids(funded: Ledger) -> None:
    with pytest.raises(ValueError):
        await funded.flag_unrooted("req-0")
    assert await funded.flag_unrooted([]) == 0


# --- upgrade ---------------------------------------------------------------------------------


def _first_schema(backend: str, tmp: Path, server: PostgresServer | None) -> str:
    if backend == "sqlite":
        path = tmp / "ledger.db"
        with closing(sqlite3.connect(path)) as conn:
            conn.executescript(V1_SQLITE_SCHEMA)
        return f"sqlite:///{path}"
    assert server is not None
    url = server.create_database(f"ledger_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in filter(str.strip, V1_POSTGRES_TABLES.split(";")):
            conn.execute(statement)
        for function in V1_POSTGRES_FUNCTIONS:
            conn.execute(function)
    return url


def _has_proofs_table(url: str) -> bool:
    if url.startswith("sqlite:///"):
        sql = "SELECT name FROM sqlite_master WHERE name = 'ledger_receipt_proofs'"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE tablename = 'ledger_receipt_proofs'"
    return bool(query(url, sql))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_first_schema_database_gains_the_proofs_table(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> None:
    server = request.getfixturevalue("postgres") if backend == "postgres" else None
    url = _first_schema(backend, tmp_path, server)
    assert not _has_proofs_table(url)
    _, proofs = real_proofs(2)
    for _ in range(2):  # the second open of an upgraded database changes nothing
        ledger = open_ledger(url, clock=clock)
        await ledger.open()
        try:
            assert _has_proofs_table(url)
            await ledger.store_receipt_proofs(list(proofs.items()))
            assert await ledger.receipt_proof("req-1") == proofs["req-1"]
        finally:
            await ledger.close()
