"""A miner that streams without end through a real gateway process: an event that never ends
(lines without the blank line between events, or one line without any newline) is cut once it
passes the gateway's per-event bound, the client's stream ends with an error event, and the
gateway keeps answering other clients while the hostile stream is open. The hostile miner is
a real socket server on loopback; the healthy one a real engine simulator."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from teeroute_gateway.streaming import MAX_EVENT
from teeroute_gateway.upstream import MAX_HEAD
from tests.gateway.procs import Proc, create_key, engine, gateway, lease, write_config
from tests.hostile import Hostile, Plan, hostile

WAIT_S = 120  # generous: nothing here is a timing claim
GIVE_UP = 48 * 1024 * 1024
"""The hostile miner stops by itself here; a gateway without a bound takes all of it."""
KERNEL_SLACK = 16 * 1024 * 1024
"""What socket buffers between the miner and the gateway may hold beyond what it read."""
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
FIRST = (
    b'data: {"id":"x","object":"chat.completion.chunk","model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
)
LINE = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n'
PLANS = {
    # every line a token's chunk, but never the blank line that ends an event
    "no-event-breaks": (FIRST, LINE * (65536 // len(LINE))),
    # one `data:` line that never ends
    "one-giant-line": (FIRST + b'data: {"choices":[{"index":0,"delta":{"content":"', b"x" * 65536),
}


@dataclass
class Streamed:
    """What a client read from one streamed request, read on its own thread."""

    body: bytearray = field(default_factory=bytearray)
    status: int = 0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def stream_in_background(url: str, key: str, model: str) -> Streamed:
    got = Streamed()

    def read() -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        try:
            with httpx.stream(
                "POST", f"{url}/v1/chat/completions", json=body, headers=_auth(key), timeout=WAIT_S
            ) as answer:
                got.status = answer.status_code
                for piece in answer.iter_bytes():
                    got.body += piece
        except BaseException as exc:  # reported to the test, which fails on it
            got.error = exc
        finally:
            got.done.set()

    threading.Thread(target=read, daemon=True).start()
    return got


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _with_hostile_route(config: Path, url: str) -> None:
    """Adds pool `evil` (the hostile miner) and the public model `evil-model` routed only to it."""
    docs = list(yaml.safe_load_all(config.read_text()))
    pool = {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "MinerPool",
        "metadata": {"name": "evil"},
        "spec": {
            "models": [{"name": "sim-model", "contextLength": 8192}],
            "tee": {"type": "simulated"},
            "pricing": {"inputPerMillion": "1", "outputPerMillion": "2"},
            "endpoints": [{"name": "e", "url": url}],
        },
        "status": {"endpoints": [{**lease("e"), "url": url}]},
    }
    route = {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": "evil"},
        "spec": {
            "model": "evil-model",
            "backends": [{"pool": "evil"}],
            "constraints": {"allowedTee": ["simulated"]},
            "sealing": "off",
        },
    }
    config.write_text(yaml.safe_dump_all([*docs, pool, route]))


@pytest.fixture
def healthy(tmp_path: Path) -> Iterator[Proc]:
    with engine(tmp_path, "ok", "--ttft-ms", "5") as proc:
        yield proc


def _events(body: bytes) -> list[bytes]:
    return [e for e in bytes(body).split(b"\n\n") if e.strip()]


@pytest.mark.parametrize("shape", sorted(PLANS))
def test_a_miner_event_without_end_is_cut_and_other_clients_are_served(
    shape: str, healthy: Proc, tmp_path: Path
) -> None:
    prefix, piece = PLANS[shape]
    plan = Plan(HEAD, piece, GIVE_UP, chunked=True, prefix=prefix, pause_after=MAX_EVENT // 2)
    with hostile(plan) as miner:
        config = write_config(
            tmp_path / "gw.yaml", {"ok": [("a", healthy.url)]}, leases={"ok": [lease("a")]}
        )
        _with_hostile_route(config, miner.url)
        key = create_key(config, "10")
        with gateway(config) as gw:
            evil = stream_in_background(gw.url, key, "evil-model")
            assert plan.paused.wait(WAIT_S)  # half an event sent; the hostile stream is open
            ok = _healthy_answer(gw.url, key)
            plan.resume.set()  # now without end
            assert evil.done.wait(WAIT_S), "the hostile stream never ended"
            assert miner.answered.wait(WAIT_S)
            again = _healthy_answer(gw.url, key)
    assert ok["choices"][0]["message"]["content"] and again["choices"]
    _assert_cut(evil, miner)


def _healthy_answer(url: str, key: str) -> dict[str, object]:
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    answer = httpx.post(f"{url}/v1/chat/completions", json=body, headers=_auth(key), timeout=WAIT_S)
    assert answer.status_code == 200, answer.text
    parsed: dict[str, object] = answer.json()
    return parsed


def _assert_cut(evil: Streamed, miner: Hostile) -> None:
    """The client got the miner's first event, then an error event, and no [DONE]; the gateway
    hung up on the miner long before it was done sending."""
    assert evil.error is None and evil.status == 200
    assert b"[DONE]" not in evil.body
    events = _events(evil.body)
    assert events[0] == FIRST.strip()
    last = orjson.loads(events[-1].removeprefix(b"data: "))
    assert last["error"]["code"] == 502 and last["choices"][0]["finish_reason"] == "error"
    assert miner.hung_up and miner.sent < MAX_EVENT + KERNEL_SLACK


def test_a_miner_whose_headers_never_end_gets_the_client_a_clean_error(
    healthy: Proc, tmp_path: Path
) -> None:
    plan = Plan(b"HTTP/1.1 200 OK\r\nX-Padding: ", b"a" * 65536, GIVE_UP)
    with hostile(plan) as miner:
        config = write_config(
            tmp_path / "gw.yaml", {"ok": [("a", healthy.url)]}, leases={"ok": [lease("a")]}
        )
        _with_hostile_route(config, miner.url)
        key = create_key(config, "10")
        with gateway(config) as gw:
            body = {"model": "evil-model", "messages": [{"role": "user", "content": "hi"}]}
            answer = httpx.post(
                f"{gw.url}/v1/chat/completions", json=body, headers=_auth(key), timeout=WAIT_S
            )
            assert miner.answered.wait(WAIT_S)
            ok = _healthy_answer(gw.url, key)
    assert ok["choices"]
    assert answer.status_code == 502
    assert answer.json()["error"]["type"] == "upstream_error"
    assert miner.hung_up and miner.sent < MAX_HEAD + KERNEL_SLACK
