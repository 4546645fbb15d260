"""A miner that answers the operator without end. However its evidence body is framed
(chunked, a huge Content-Length, or no length at all), the challenge gives up at the
document's size limit with a typed Rejected, having held at most the limit plus one network
chunk; an endless refusal of a secret release is not read either. The hostile agent is a real
socket server on loopback; the operator's own code reads from it with the real HTTP client."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import socket
import threading
import time
import tracemalloc
from typing import Any, cast

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from teeroute.attestation.evidence import Trust
from teeroute.attestation.policy import Policy
from teeroute.sealing.secrets import Signer
from teeroute_operator import delivery
from teeroute_operator.challenge import MAX_DOCUMENT_BYTES, Judge, Target, challenge
from teeroute_operator.lease import Outcome, Rejected, Unreachable
from teeroute_operator.metrics import Metrics
from teeroute_operator.nonces import NonceBook
from teeroute_operator.sweeper import Sweeper
from teeroute_operator.trust import TrustStore
from tests.hostile import Plan, hostile

GIVE_UP = 64 * 1024 * 1024
"""The hostile agent stops by itself here (a reader without a bound reads all of it)."""
SLACK = 1024 * 1024
"""What a bounded read may hold beyond the limit: one network chunk, and the client's own."""
PIECE = b" " * 65536  # JSON whitespace: a parser would wait for more


def judge() -> Judge:
    return Judge(
        policy=Policy(allowed_tee=frozenset({"simulated"}), max_age=dt.timedelta(minutes=1)),
        trust=Trust(simulated_root_pem=None),
        require_gpu=False,
    )


def _run_measured(url: str) -> tuple[Outcome, int]:
    """The challenge's outcome, and the most memory it held at once beyond what it started
    with (every allocation of this process is traced). Measured on a second challenge: the
    first also pays for one-off lazy imports and caches of the HTTP stack."""

    async def go() -> Outcome:
        async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
            return await challenge(
                client,
                Target("pod-1", url),
                judge(),
                NonceBook(dt.timedelta(seconds=60)),
                Metrics(),
                lambda: dt.datetime.now(dt.UTC),
            )

    asyncio.run(go())
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        outcome = asyncio.run(go())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, peak - before


HEADS = {
    "chunked": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n",
    "declared-400MB": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: 400000000\r\n\r\n",
    "unframed": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
}


@pytest.mark.parametrize("framing", sorted(HEADS))
def test_an_endless_evidence_body_is_rejected_at_the_size_limit(framing: str) -> None:
    plan = Plan(HEADS[framing], PIECE, GIVE_UP, chunked=framing == "chunked", prefix=b'{"a":')
    with hostile(plan) as agent:
        outcome, held = _run_measured(agent.url)
        assert agent.answered.wait(30)
    assert isinstance(outcome, Rejected)
    assert f"larger than {MAX_DOCUMENT_BYTES} bytes" in outcome.reason
    assert held < MAX_DOCUMENT_BYTES + SLACK  # never the whole body
    assert agent.hung_up and agent.sent < GIVE_UP // 2  # the operator stopped reading


def test_an_endless_refusal_of_a_secret_release_is_not_read() -> None:
    """The agent answers the operator's secret release with an error body without end: the
    operator reads no more than the refusal's limit of it and reports the status."""
    head = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
    plan = Plan(head + b"Connection: close\r\n\r\n", PIECE, GIVE_UP, prefix=b'{"error":')
    hpke = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    signer = Signer.from_private(ed25519.Ed25519PrivateKey.generate())

    async def go() -> str | None:
        async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
            return await delivery.deliver(
                client,
                agent.url,
                base64.b64encode(hpke).decode(),
                "ns/pool",
                {"engine-api-key": "x"},
                signer,
                time.time_ns(),
            )

    with hostile(plan) as agent:
        why = asyncio.run(go())
        assert agent.answered.wait(30)
    assert why == "the agent answered HTTP 400"
    assert agent.hung_up and agent.sent < GIVE_UP // 2


def test_an_agent_dribbling_its_answer_is_cut_at_the_challenges_deadline() -> None:
    """One byte every 0.2 s never trips a per-read timeout of 0.5 s; the sweep's overall
    deadline (twice the timeout) ends the challenge as Unreachable and frees its slot."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def dribble() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
            while not stop.wait(0.2):
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    threading.Thread(target=dribble, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def go() -> Outcome:
        sweeper = Sweeper(
            cast(Any, None),  # the challenge path never reaches the apiserver
            TrustStore(None, False),
            Metrics(),
            lambda *_: None,
            signer=None,
            timeout_s=0.5,
        )
        try:
            return await sweeper._bounded(Target("pod-1", url), judge())
        finally:
            await sweeper.aclose()

    try:
        outcome = asyncio.run(go())
    finally:
        stop.set()
        listener.close()
    assert outcome == Unreachable("no complete answer within 1 s")
