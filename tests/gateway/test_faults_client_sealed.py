"""`kill -9` of the gateway while client-sealed answers wait for their usage records (issue 17).

The gateway relays a client-sealed answer unopened, but it must still not deliver it before
its usage record is committed: a client holding a whole answer (every CHUNK through the final
one and the RECEIPT) whose record never reached the ledger is work nobody pays for. The
attacker's case, as for plain answers (test_faults_gateway_kill.py): the ledger stalls (another
session holds SQLite's write lock) just as the answers are ready, and the gateway is killed
then. Every answer a client got whole must be in the ledger exactly once; the ones cut off
leave no hold once the restarted gateway has reaped them. And when the ledger stays out of
reach, the answer ends with an ERROR frame instead of its final chunk and receipt. Real
processes: an engine simulator, an enclave agent (simulated TEE) that accepts only sealed
requests, the gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from teeroute.sealing.frames import FrameDecoder, FrameType
from teeroute.sealing.session import Exchange, Session
from teeroute_gateway.ledger.durable import SETTLE_WITHIN_S
from teeroute_sandbox.testing import wait_for

from . import sealed_v2
from .faultload import Restartable, read_books
from .miners import agent, chip_dir, verified_lease
from .procs import create_key, engine, write_config
from .test_faults_gateway_kill import HOLD_TTL_S, ledger_stalled

pytestmark = pytest.mark.timeout(240)

REQUESTS = 4


@dataclass
class Sealed:
    """One client-sealed request: what was sent, the exchange to open its answer, and what
    came back before the connection ended."""

    frame: bytes
    exchange: Exchange
    stream: bool
    rid: str | None = None
    content: bytes = b""


@pytest.fixture
def miner(tmp_path: Path) -> Iterator[dict[str, Any]]:
    chips = chip_dir(tmp_path / "chips")
    with (
        engine(tmp_path, "e0", "--ttft-ms", "5", "--tokens-per-s", "20") as eng,
        agent(chips, eng.url, tmp_path / "agent.log", TEEROUTE_AGENT_REQUIRE_SEALED="true") as a,
    ):
        yield verified_lease("m0", a.url, chips)


def _config(tmp_path: Path, lease: dict[str, Any], ledger: str) -> Path:
    return write_config(
        tmp_path / "gw.yaml",
        {"p": [("m0", lease["url"])]},
        leases={"p": [lease]},
        route={"sealing": "gateway"},
        settings={"ledger": ledger, "holdTtlS": HOLD_TTL_S},
    )


def _requests(session: Session, count: int) -> list[Sealed]:
    out = []
    for n in range(count):
        body = {
            "model": "sim-model",
            "messages": [{"role": "user", "content": f"question {n}"}],
            "max_tokens": 10,
            "stream": n % 2 == 0,
        }
        frame, exchange = sealed_v2.seal(session, body)
        out.append(Sealed(frame, exchange, bool(body["stream"])))
    return out


async def _post(http: httpx.AsyncClient, key: str, request: Sealed) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": sealed_v2.V2}
    try:
        async with http.stream(
            "POST", sealed_v2.CHAT, content=request.frame, headers=headers
        ) as answer:
            request.rid = answer.headers.get("x-request-id")
            async for piece in answer.aiter_raw():
                request.content += piece
    except httpx.TransportError:
        pass  # cut off: keep what came


async def _cut_while_the_ledger_stalls(
    gw: Restartable, key: str, ledger: str, asked: list[Sealed]
) -> None:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        asking = [asyncio.create_task(_post(http, key, r)) for r in asked]
        await asyncio.to_thread(
            wait_for, lambda: read_books(ledger).holds == len(asked), 30, 0.05, "the holds"
        )
        with ledger_stalled(ledger):
            # the engine answers in about half a second: ample time to deliver (it must not)
            await asyncio.sleep(3)
            gw.kill()
        await asyncio.gather(*asking)


@dataclass
class Served:
    gw: Restartable
    key: str
    ledger: str


@pytest.fixture
def served(tmp_path: Path, miner: dict[str, Any]) -> Iterator[Served]:
    """A gateway in front of the miner, its ledger a SQLite file; stopped afterwards."""
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = _config(tmp_path, miner, ledger)
    key = create_key(config, "1000")
    gw = Restartable(config, tmp_path)
    gw.start()
    try:
        yield Served(gw, key, ledger)
    finally:
        gw.stop()


def test_no_client_sealed_answer_is_whole_before_its_usage_is_committed(
    served: Served, miner: dict[str, Any]
) -> None:
    gw, key, ledger = served.gw, served.key, served.ledger
    session = sealed_v2.open_session(gw.url, key, miner)
    asked = _requests(session, REQUESTS)
    asyncio.run(_cut_while_the_ledger_stalls(gw, key, ledger, asked))
    gw.start()  # a new gateway, which reaps what the dead one held
    wait_for(lambda: read_books(ledger).holds == 0, HOLD_TTL_S * 10, 0.1, "reaping")
    # and with the ledger free, the same kind of answer is whole and recorded once
    second = sealed_v2.open_session(gw.url, key, miner)
    after = _requests(second, 2)
    asyncio.run(_all(gw.url, key, after))
    books = read_books(ledger)
    key_of = session.receipt_key
    whole = [r for r in asked if sealed_v2.whole_answer(r.content, r.exchange, key_of)]
    for request in whole:  # each whole answer is paid for, once
        assert request.rid is not None and books.rows.get(request.rid, (0, 0))[0] == 1, (
            request.rid,
            books.rows,
        )
    assert all(r.rid for r in asked)  # each was answered 200 and relayed up to its end
    assert any(r.content for r in asked if r.stream)  # the streams' first frames came
    for request in after:
        assert sealed_v2.whole_answer(request.content, request.exchange, second.receipt_key)
        assert books.rows.get(request.rid or "", (0, 0))[0] == 1, (request.rid, books.rows)


async def _all(url: str, key: str, asked: list[Sealed]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await asyncio.gather(*(_post(http, key, r) for r in asked))


async def _asked_while_the_ledger_stays_stalled(
    gw: Restartable, key: str, ledger: str, request: Sealed
) -> None:
    async with httpx.AsyncClient(base_url=gw.url, timeout=SETTLE_WITHIN_S + 30) as http:
        asking = asyncio.create_task(_post(http, key, request))
        await asyncio.to_thread(
            wait_for, lambda: read_books(ledger).holds == 1, 30, 0.05, "the hold"
        )
        with ledger_stalled(ledger):
            await asyncio.wait_for(asyncio.shield(asking), SETTLE_WITHIN_S + 20)


def test_an_answer_whose_usage_cannot_be_recorded_ends_with_an_error_frame(
    served: Served, miner: dict[str, Any]
) -> None:
    """The ledger stays out of reach past SETTLE_WITHIN_S: the held final chunk and receipt
    never go out; the answer ends with an ERROR frame saying why (about 30 s)."""
    session = sealed_v2.open_session(served.gw.url, served.key, miner)
    [request] = _requests(session, 1)
    asyncio.run(
        _asked_while_the_ledger_stays_stalled(served.gw, served.key, served.ledger, request)
    )
    assert sealed_v2.whole_answer(request.content, request.exchange, session.receipt_key) is None
    found = FrameDecoder().feed(request.content)
    assert [f.type for f in found][-1] == FrameType.ERROR
    assert FrameType.RECEIPT not in [f.type for f in found]
    error = json.loads(found[-1].payload)["error"]
    assert (error["code"], error["type"]) == ("ledger_unavailable", "service_unavailable")
