"""One challenge over real HTTP on loopback: a real enclave agent (simulated TEE) for the good
path, and a scripted server for everything an agent, or something posing as one, may answer.
Every answer becomes a typed outcome; nothing raises."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from teeroute.attestation import simulated
from teeroute.attestation.evidence import Trust
from teeroute.attestation.policy import Policy
from teeroute.attestation.providers import SimulatedProvider
from teeroute_enclave.keys import EnclaveKeys
from teeroute_enclave.server import AgentServer
from teeroute_operator.challenge import Judge, Target, challenge
from teeroute_operator.lease import Outcome, Rejected, Unreachable, Verified
from teeroute_operator.metrics import Metrics
from teeroute_operator.nonces import NonceBook

from ..enclave.test_agent import chip_dir, serve  # noqa: F401 - a fixture, used by name

MEASUREMENT = bytes(range(48))


def judge(root_pem: bytes, measurement: bytes = MEASUREMENT) -> Judge:
    return Judge(
        policy=Policy(
            allowed_tee=frozenset({"simulated"}),
            allowed_measurements=frozenset({measurement.hex()}),
            max_age=dt.timedelta(minutes=1),
        ),
        trust=Trust(simulated_root_pem=root_pem),
        require_gpu=False,
    )


def run(target: Target, j: Judge, book: NonceBook | None = None) -> Outcome:
    async def go() -> Outcome:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            return await challenge(
                client,
                target,
                j,
                book or NonceBook(dt.timedelta(seconds=10)),
                Metrics(),
                lambda: dt.datetime.now(dt.UTC),
            )

    return asyncio.run(go())


@pytest.fixture
def agent(chip_dir: Path) -> Iterator[str]:  # noqa: F811 - the imported fixture
    provider = SimulatedProvider(chip_dir, "node-a", MEASUREMENT)
    server = AgentServer(("127.0.0.1", 0), provider, EnclaveKeys.generate(), "")
    yield serve(server)
    server.shutdown()
    server.server_close()


def test_a_real_agent_is_verified(agent: str, chip_dir: Path) -> None:  # noqa: F811
    outcome = run(Target("pod-1", agent), judge((chip_dir / "root.crt").read_bytes()))
    assert isinstance(outcome, Verified)
    assert outcome.measurement == MEASUREMENT.hex()
    assert len(outcome.chip_id) == 128 and len(outcome.hpke_key) == 64


def test_a_measurement_outside_the_policy_is_rejected_by_name(
    agent: str,
    chip_dir: Path,  # noqa: F811
) -> None:
    outcome = run(Target("pod-1", agent), judge((chip_dir / "root.crt").read_bytes(), bytes(48)))
    assert isinstance(outcome, Rejected) and "policy.measurement" in outcome.reason


def test_an_untrusted_root_is_rejected(agent: str) -> None:
    other, _ = simulated.new_root(dt.datetime.now(dt.UTC))
    outcome = run(Target("pod-1", agent), judge(other.public_bytes(Encoding.PEM)))
    assert isinstance(outcome, Rejected) and "sim.chain" in outcome.reason


class Scripted(ThreadingHTTPServer):
    """Answers every POST with `reply(request body)` -> (status, body bytes)."""

    def __init__(self, reply: Callable[[bytes], tuple[int, bytes]]) -> None:
        self.reply = reply
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status, payload = self.server.reply(body)
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


def scripted(reply: Callable[[bytes], tuple[int, bytes]]) -> tuple[Scripted, str]:
    server = Scripted(reply)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def document(nonce: str) -> bytes:
    return json.dumps(
        {
            "tee": "simulated",
            "nonce": nonce,
            "evidence": "",
            "certificates": [],
            "enclave_keys": {"hpke": "", "signing": ""},
            "produced_at": "2026-11-24T00:00:00Z",
        }
    ).encode()


@pytest.mark.parametrize(
    ("reply", "kind", "reason"),
    [
        (lambda _: (503, b"{}"), Unreachable, "HTTP 503"),
        (lambda _: (429, b"{}"), Unreachable, "HTTP 429"),
        (lambda _: (404, b"{}"), Rejected, "HTTP 404"),
        (lambda _: (200, b"not json"), Rejected, "Expecting value"),
        (lambda _: (200, b"[1, 2]"), Rejected, "document"),
        (lambda _: (200, b" " * 300_000), Rejected, "larger than"),
        (lambda _: (200, document("AAAA")), Rejected, "nonce"),  # not the nonce we sent
        (
            lambda body: (200, document(json.loads(body)["nonce"])),
            Rejected,
            "no chip certificate",
        ),  # past the nonce
    ],
    ids=[
        "busy",
        "rate-limited",
        "not-an-agent",
        "not-json",
        "not-a-document",
        "oversized",
        "foreign-nonce",
        "garbage-evidence",
    ],
)
def test_every_bad_answer_becomes_a_typed_outcome(
    reply: Callable[[bytes], tuple[int, bytes]], kind: type, reason: str
) -> None:
    server, url = scripted(reply)
    try:
        outcome = run(Target("pod-1", url), judge(b""))
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(outcome, kind)
    assert reason in outcome.reason


def test_a_replayed_answer_is_refused() -> None:
    answers: list[bytes] = []

    def replay(body: bytes) -> tuple[int, bytes]:
        if not answers:  # answer the first challenge properly, then replay that answer
            answers.append(document(json.loads(body)["nonce"]))
        return 200, answers[0]

    server, url = scripted(replay)
    book = NonceBook(dt.timedelta(seconds=10))
    try:
        run(Target("pod-1", url), judge(b""), book)
        outcome = run(Target("pod-1", url), judge(b""), book)
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(outcome, Rejected) and "nonce" in outcome.reason


def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = run(Target("pod-1", f"http://127.0.0.1:{port}"), judge(b""))
    assert outcome == Unreachable("connection failed")
