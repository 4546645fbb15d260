"""The gateway's limits show on /metrics: a real `teeroute gateway serve` with one slot, one
queue place and six connections, in front of an engine simulator that takes seconds to
answer. Each way the gateway refuses (queue full, queue timeout, connection cap, a head too
large) moves `teeroute_gateway_limit_refusals_total` for its reason, and the gauges of
requests in flight and queued follow the load up and back down (docs/gateway-limits.md)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from teeroute_sandbox.testing import wait_for
from tests.gateway.procs import Proc, create_key, engine, gateway, lease, metric, write_config

BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
MAX_CONNECTIONS = 6
REFUSALS = "teeroute_gateway_limit_refusals_total"


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str]]:
    tmp = tmp_path_factory.mktemp("limit-metrics")
    with engine(tmp, "slow", "--ttft-ms", "6000") as upstream:
        config = write_config(
            tmp / "gw.yaml",
            {"p": [("a", upstream.url)]},
            leases={"p": [lease("a")]},
            settings={
                "maxInFlight": 1,
                "maxQueued": 1,
                "queueTimeoutS": 3,
                "maxConnections": MAX_CONNECTIONS,
                "maxHeaderBytes": 8192,
                "requestHeadTimeoutS": 30,
            },
        )
        key = create_key(config, "100")
        with gateway(config) as proc:
            yield proc, key


def refusals(gw: Proc, reason: str) -> float:
    return metric(gw, f'{REFUSALS}{{reason="{reason}"}}')


def moved(gw: Proc, reason: str, before: float) -> Callable[[], bool]:
    return lambda: refusals(gw, reason) > before


def chat(gw: Proc, key: str, statuses: list[int]) -> threading.Thread:
    """A chat request sent on its own thread; its status lands in `statuses`."""

    def send() -> None:
        answer = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json=BODY,
            headers={"authorization": f"Bearer {key}"},
            timeout=60,
        )
        statuses.append(answer.status_code)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_every_refusal_reason_starts_at_zero(one_slot: tuple[Proc, str]) -> None:
    text = httpx.get(f"{one_slot[0].url}/metrics", timeout=10).text
    for reason in ("queue_full", "queue_timeout", "connection_cap", "head_timeout",
                   "head_too_large", "body_timeout", "body_too_large"):  # fmt: skip
        assert f'{REFUSALS}{{reason="{reason}"}} 0.0' in text, reason
    assert "teeroute_gateway_inflight_requests 0.0" in text
    assert "teeroute_gateway_queued_requests 0.0" in text


def test_a_full_queue_and_a_queue_timeout_are_counted_and_the_gauges_follow_the_load(
    one_slot: tuple[Proc, str],
) -> None:
    gw, key = one_slot
    full, late = refusals(gw, "queue_full"), refusals(gw, "queue_timeout")
    first: list[int] = []
    holder = chat(gw, key, first)  # takes the slot for the engine's 6 s
    wait_for(lambda: metric(gw, "teeroute_gateway_inflight_requests") == 1, what="one in flight")
    others: list[int] = []
    threads = [chat(gw, key, others) for _ in range(2)]  # one waits and times out, one is refused
    wait_for(lambda: metric(gw, "teeroute_gateway_queued_requests") == 1, what="one queued")
    for thread in (holder, *threads):
        thread.join()
    assert (first, sorted(others)) == ([200], [503, 503])
    wait_for(moved(gw, "queue_full", full), what="the queue_full refusal counted")
    wait_for(moved(gw, "queue_timeout", late), what="the queue_timeout refusal counted")
    wait_for(
        lambda: (
            metric(gw, "teeroute_gateway_inflight_requests") == 0
            and metric(gw, "teeroute_gateway_queued_requests") == 0
        ),
        what="the gauges back at zero",
    )


def _connect(gw: Proc) -> socket.socket:
    url = urlsplit(gw.url)
    return socket.create_connection((url.hostname, url.port), timeout=30)


def test_a_connection_over_the_cap_is_counted(one_slot: tuple[Proc, str]) -> None:
    gw = one_slot[0]
    before = refusals(gw, "connection_cap")
    with contextlib.ExitStack() as stack:
        for _ in range(MAX_CONNECTIONS + 1):  # idle connections: the last is over the cap
            stack.enter_context(_connect(gw))
        over = stack.enter_context(_connect(gw))
        assert over.recv(4096).startswith(b"HTTP/1.1 503")
    wait_for(moved(gw, "connection_cap", before), what="the connection_cap refusal counted")


def test_a_head_too_large_is_counted(one_slot: tuple[Proc, str]) -> None:
    gw = one_slot[0]
    before = refusals(gw, "head_too_large")
    with _connect(gw) as conn:
        conn.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 16384 + b"\r\n\r\n")
        assert conn.recv(4096).startswith(b"HTTP/1.1 431")
    wait_for(moved(gw, "head_too_large", before), what="the head_too_large refusal counted")
