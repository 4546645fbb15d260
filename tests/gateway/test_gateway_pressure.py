"""The gateway against hostile connections and overload, over real sockets: a real
`teeroute gateway serve` in front of an engine simulator, and clients that trickle their
headers or bodies, send heads or bodies far over the limits, or arrive ten times faster than
the gateway admits them. Each must be cut off with an OpenAI-shaped 408/413/431/503 (with
Retry-After where waiting helps) or a closed connection, in bounded time and memory, while
well-behaved clients are still served.

The limits are set small here (2 s deadlines, 8 KiB heads) so that the generous bounds below
("cut off within 30 s") hold on a loaded 2-core machine; nothing here measures speed."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from teeroute_gateway.errors import Unavailable
from teeroute_gateway.overload import Gate, decide
from teeroute_sandbox.testing import wait_for
from tests.gateway.attested import https_gateway, tls_files
from tests.gateway.procs import Proc, create_key, engine, gateway, lease, write_config

BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
CUT_OFF_WITHIN_S = 30.0
LIMITS = {
    "requestHeadTimeoutS": 2,
    "bodyReadTimeoutS": 2,
    "maxHeaderBytes": 8192,
    "maxHeaders": 32,
    "maxBodyBytes": 65536,
    "maxConnections": 32,
}
CHAT = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"


@dataclass
class Outcome:
    """What a raw client saw: the bytes the gateway answered, how many it sent, and when the
    gateway closed the connection (None: still open when the client gave up)."""

    answer: bytes
    sent: int
    closed_after_s: float | None

    @property
    def status(self) -> int | None:
        parts = self.answer.split(b" ", 2)
        return int(parts[1]) if len(parts) > 2 and self.answer.startswith(b"HTTP/1.1") else None

    def header(self, name: str) -> str | None:
        head = self.answer.partition(b"\r\n\r\n")[0].decode("latin-1")
        for line in head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name:
                return value.strip()
        return None

    def error(self) -> dict[str, Any]:
        body = self.answer.partition(b"\r\n\r\n")[2]
        if self.header("transfer-encoding") == "chunked":
            body = dechunk(body)
        return json.loads(body)["error"]  # type: ignore[no-any-return]


def dechunk(body: bytes) -> bytes:
    whole = bytearray()
    while True:
        size, _, body = body.partition(b"\r\n")
        if int(size, 16) == 0:
            return bytes(whole)
        whole += body[: int(size, 16)]
        body = body[int(size, 16) + 2 :]


def converse(url: str, first: bytes, then: Iterable[bytes] = (), pace_s: float = 0.0) -> Outcome:
    """Send `first`, then each piece of `then` `pace_s` apart, reading all the while; stop
    when the gateway closes the connection or CUT_OFF_WITHIN_S has passed."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.setblocking(False)
    started = time.monotonic()
    answer, sent, pending = bytearray(), 0, first
    pieces: Iterator[bytes] = iter(then)
    next_at = started
    try:
        while time.monotonic() - started < CUT_OFF_WITHIN_S:
            wait = min(0.5, max(0.0, next_at - time.monotonic())) if not pending else 0.05
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], wait)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    return Outcome(bytes(answer), sent, time.monotonic() - started)
                answer += chunk
            if pending and writable:
                n = sock.send(pending)
                sent, pending = sent + n, pending[n:]
                if not pending:
                    next_at = time.monotonic() + pace_s
            if not pending and time.monotonic() >= next_at:
                pending = next(pieces, b"")
                if not pending:
                    next_at = float("inf")
    except (ConnectionResetError, BrokenPipeError):
        return Outcome(bytes(answer) + _rest(sock), sent, time.monotonic() - started)
    finally:
        sock.close()
    return Outcome(bytes(answer), sent, None)


def _rest(sock: socket.socket) -> bytes:
    """What the gateway had sent before it reset the connection, still in our buffer."""
    try:
        return sock.recv(1 << 20)
    except OSError:
        return b""


def trickle(text: bytes) -> Iterator[bytes]:
    """`text` one byte at a time, over and over."""
    return (bytes([b]) for b in itertools.cycle(text))


def rss_kib(proc: Proc) -> int:
    for line in Path(f"/proc/{proc.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pressure")


@pytest.fixture(scope="module")
def served(tmp: Path) -> Iterator[tuple[Proc, str]]:
    with engine(tmp, "a") as upstream:
        config = write_config(
            tmp / "gw.yaml",
            {"p": [("a", upstream.url)]},
            leases={"p": [lease("a")]},
            settings=LIMITS,
        )
        key = create_key(config, "100")
        with gateway(config) as proc:
            yield proc, key


def chat_ok(gw: Proc, key: str) -> bool:
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json=BODY,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
    return answer.status_code == 200


def cut_off_with(outcome: Outcome, status: int, code: str, *, announced: bool = True) -> None:
    """The gateway answered `status` in the OpenAI shape and closed the connection (saying
    so with Connection: close when `announced`)."""
    assert outcome.closed_after_s is not None, f"still open after {CUT_OFF_WITHIN_S} s"
    assert outcome.status == status, outcome.answer[:300]
    error = outcome.error()
    assert error["code"] == code
    assert set(error) == {"message", "type", "code", "param"}
    if announced:
        assert outcome.header("connection") == "close"


@pytest.mark.parametrize(
    ("rest", "slowly"),
    [
        pytest.param(b"", b"x-slow: 1\r\n", id="head trickled"),
        pytest.param(b"Content-Length: 5000\r\n\r\n{", b" ", id="body trickled"),
        pytest.param(
            b"Transfer-Encoding: chunked\r\n\r\n", b"1\r\na\r\n", id="chunked body trickled"
        ),
    ],
)
def test_a_slowloris_client_is_cut_off_with_408_while_others_are_served(
    served: tuple[Proc, str], rest: bytes, slowly: bytes
) -> None:
    gw, key = served
    first = CHAT + f"Authorization: Bearer {key}\r\n".encode() + rest
    slow: list[Outcome] = []

    def slowloris() -> None:
        slow.append(converse(gw.url, first, trickle(slowly), pace_s=0.5))

    threads = [threading.Thread(target=slowloris) for _ in range(5)]
    for thread in threads:
        thread.start()
    served_meanwhile = [chat_ok(gw, key) for _ in range(5)]
    for thread in threads:
        thread.join()
    assert all(served_meanwhile)
    assert len(slow) == 5
    for outcome in slow:
        cut_off_with(outcome, 408, "request_timeout")


def test_a_connection_that_never_sends_a_byte_is_closed(served: tuple[Proc, str]) -> None:
    outcome = converse(served[0].url, b"")
    assert outcome.closed_after_s is not None, f"still open after {CUT_OFF_WITHIN_S} s"
    assert outcome.answer == b""  # nothing was asked, so nothing is answered


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(CHAT + b"x-big: " + b"a" * 20000 + b"\r\n\r\n", id="one huge header"),
        pytest.param(
            CHAT + b"".join(b"x-%d: 1\r\n" % i for i in range(200)) + b"\r\n", id="many headers"
        ),
        pytest.param(
            b"GET /v1/models?" + b"q" * 20000 + b" HTTP/1.1\r\nHost: gw\r\n\r\n", id="huge url"
        ),
    ],
)
def test_an_oversized_head_is_refused_with_431(served: tuple[Proc, str], head: bytes) -> None:
    cut_off_with(converse(served[0].url, head), 431, "headers_too_large")


def test_a_header_that_never_ends_is_cut_off_in_bounded_memory(
    served: tuple[Proc, str],
) -> None:
    gw, key = served
    before = rss_kib(gw)
    flood = 64 * 1024 * 1024
    outcome = converse(gw.url, CHAT + b"x-big: ", itertools.repeat(b"a" * 65536, flood // 65536))
    assert outcome.closed_after_s is not None, f"still open after {CUT_OFF_WITHIN_S} s"
    assert outcome.sent < flood // 4  # the gateway stopped taking bytes long before the end
    assert rss_kib(gw) - before < 32 * 1024
    assert chat_ok(gw, key)


def test_a_connection_over_the_limit_gets_503_with_retry_after(
    served: tuple[Proc, str],
) -> None:
    gw, key = served
    host, port = gw.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(32)]
    try:
        outcome = converse(gw.url, b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n")
    finally:
        for sock in idle:
            sock.close()
    cut_off_with(outcome, 503, "overloaded")
    assert int(outcome.header("retry-after") or 0) >= 1
    wait_for(lambda: chat_ok(gw, key), timeout_s=30, what="service once the others left")


def test_a_declared_oversized_body_is_refused_with_413_before_it_is_sent(
    served: tuple[Proc, str],
) -> None:
    gw, key = served
    head = CHAT + f"Authorization: Bearer {key}\r\nContent-Length: 10000000\r\n\r\n".encode()
    cut_off_with(converse(gw.url, head), 413, "body_too_large", announced=False)


def test_a_client_that_sends_its_too_large_body_anyway_still_reads_the_413(
    served: tuple[Proc, str],
) -> None:
    gw, key = served
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        content=b"x" * (4 * 65536),  # four times the limit, sent whole as most clients do
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("size", [4 * 65536, 64 * 65536])
def test_over_tls_a_client_that_sends_its_too_large_body_anyway_still_reads_the_413(
    tmp: Path, size: int
) -> None:
    """TLS cannot half-close a connection as TCP can (the gateway closes it with a TLS
    close_notify instead): the client still reads the answer sent before its body was read,
    a 413 past the limit or a 401 before any of it, with a body of 4 and of 64 times the
    limit (past LINGER_BYTES, 1 MiB)."""
    cert, key_file = tls_files(tmp, f"tls-{size}")
    with engine(tmp, f"tls-{size}") as upstream:
        config = write_config(
            tmp / f"tls-{size}.yaml",
            {"p": [("a", upstream.url)]},
            leases={"p": [lease("a")]},
            settings={**LIMITS, "tlsCertFile": str(cert), "tlsKeyFile": str(key_file)},
        )
        key = create_key(config, "100")
        trusted = ssl.create_default_context(cafile=str(cert))
        with https_gateway(config, cert, f"gateway-tls-{size}") as gw:
            answers = [
                httpx.post(
                    f"{gw.url}/v1/chat/completions",
                    content=b"x" * size,
                    headers={
                        "authorization": f"Bearer {bearer}",
                        "content-type": "application/json",
                    },
                    timeout=30,
                    verify=trusted,
                )
                for bearer in (key, key, "not-a-key", "not-a-key")
            ]
    assert [a.status_code for a in answers] == [413, 413, 401, 401]
    codes = [a.json()["error"]["code"] for a in answers]
    assert codes == ["body_too_large"] * 2 + ["invalid_api_key"] * 2


def test_a_chunked_body_without_length_is_cut_off_with_413_at_the_limit(
    served: tuple[Proc, str],
) -> None:
    gw, key = served
    head = CHAT + f"Authorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    piece = b"%x\r\n%s\r\n" % (16384, b"a" * 16384)
    flood = 64 * 1024 * 1024
    outcome = converse(gw.url, head, itertools.repeat(piece, flood // len(piece)))
    cut_off_with(outcome, 413, "body_too_large", announced=False)
    assert outcome.sent < flood // 4


async def _burst(url: str, key: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        return list(
            await asyncio.gather(
                *(
                    http.post(
                        "/v1/chat/completions",
                        json=BODY,
                        headers={"authorization": f"Bearer {key}"},
                    )
                    for _ in range(n)
                )
            )
        )


async def _ready_during(url: str, load: asyncio.Task[Any]) -> int:
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(timeout=30) as http:
        status = (await http.get(f"{url}/readyz")).status_code
    await load
    return status


@pytest.fixture(scope="module")
def two_slots(tmp: Path) -> Iterator[tuple[Proc, str]]:
    """A gateway that works on two requests at once (two more may wait), in front of a miner
    that takes a second to answer."""
    with engine(tmp, "slow", "--ttft-ms", "1000") as upstream:
        config = write_config(
            tmp / "two-slots.yaml",
            {"p": [("a", upstream.url)]},
            leases={"p": [lease("a")]},
            settings={
                "maxInFlight": 2,
                "maxQueued": 2,
                "queueTimeoutS": 20,
                "bodyReadTimeoutS": 10,
                "ledger": "sqlite:///two-slots.db",
            },
        )
        key = create_key(config, "100")
        with gateway(config, "two-slots") as proc:
            yield proc, key


def test_ten_times_more_requests_than_admitted_get_503_with_retry_after_then_recover(
    two_slots: tuple[Proc, str],
) -> None:
    gw, key = two_slots

    async def scenario() -> tuple[list[httpx.Response], int]:
        load = asyncio.create_task(_burst(gw.url, key, 40))
        ready = await _ready_during(gw.url, load)
        return load.result(), ready

    answers, ready = asyncio.run(scenario())
    statuses = collections.Counter(a.status_code for a in answers)
    assert ready == 200  # probes are never refused for load
    assert set(statuses) == {200, 503}, statuses
    assert statuses[200] >= 4
    for refused in (a for a in answers if a.status_code == 503):
        assert refused.json()["error"]["code"] == "overloaded"
        assert refused.json()["error"]["type"] == "service_unavailable"
        assert int(refused.headers["retry-after"]) >= 1
    wait_for(
        lambda: all(chat_ok(gw, key) for _ in range(4)),
        timeout_s=30,
        what="normal service once the burst is over",
    )


def test_clients_trickling_bodies_hold_no_slot(two_slots: tuple[Proc, str]) -> None:
    gw, key = two_slots
    first = CHAT + f"Authorization: Bearer {key}\r\nContent-Length: 5000\r\n\r\n{{".encode()
    slow: list[Outcome] = []

    def slowloris() -> None:
        slow.append(converse(gw.url, first, trickle(b" "), pace_s=0.5))

    threads = [threading.Thread(target=slowloris) for _ in range(4)]  # more than the slots
    for thread in threads:
        thread.start()
    time.sleep(1)
    assert chat_ok(gw, key)
    assert slow == []  # answered while every slow body was still being trickled
    for thread in threads:
        thread.join()
    for outcome in slow:
        cut_off_with(outcome, 408, "request_timeout")


@pytest.mark.parametrize(
    ("in_flight", "waiting", "expected"),
    [
        (0, 0, "run"),
        (1, 0, "run"),
        (2, 0, "wait"),  # all slots taken
        (1, 1, "wait"),  # a slot is free, but nobody overtakes a waiter
        (2, 1, "wait"),
        (2, 2, "refuse"),  # the queue is full
    ],
)
def test_the_gate_runs_queues_or_refuses(in_flight: int, waiting: int, expected: str) -> None:
    assert decide(in_flight, waiting, max_in_flight=2, max_queued=2) == expected


def test_the_gate_hands_slots_on_in_arrival_order_and_never_leaks_one() -> None:
    async def scenario() -> tuple[list[str], int, int]:
        gate = Gate(max_in_flight=1, max_queued=2, queue_timeout_s=30, retry_after_s=1)
        order: list[str] = []
        release = asyncio.Event()

        async def request(name: str) -> None:
            async with gate.slot():
                order.append(name)
                await release.wait()

        first = asyncio.create_task(request("first"))
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(request(n)) for n in ("second", "third")]
        await asyncio.sleep(0)
        with pytest.raises(Unavailable) as refused:
            async with gate.slot():
                pass
        assert refused.value.headers["Retry-After"] == "1"
        waiters[1].cancel()  # a client gives up while queued: its place is freed
        release.set()
        await asyncio.gather(first, waiters[0], return_exceptions=True)
        await asyncio.gather(waiters[1], return_exceptions=True)
        return order, gate.in_flight, len(gate._waiting)

    order, in_flight, waiting = asyncio.run(scenario())
    assert order == ["first", "second"]
    assert (in_flight, waiting) == (0, 0)


def test_a_queued_request_is_refused_when_no_slot_frees_in_time() -> None:
    async def scenario() -> tuple[str | None, int]:
        gate = Gate(max_in_flight=1, max_queued=1, queue_timeout_s=0.05, retry_after_s=3)
        async with gate.slot():
            with pytest.raises(Unavailable) as late:
                async with gate.slot():
                    pass
        return late.value.code, gate.in_flight

    assert asyncio.run(scenario()) == ("overloaded", 0)
