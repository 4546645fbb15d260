"""Miners that fail mid-answer (issue 17, faults), each a real process behind a real gateway:
one that hangs mid-stream, one that dies mid-stream, one that answers garbage, one that
sends garbage mid-stream (an HTML page between its tokens). (A miner dying
under load, a stream broken after the 200, events without end and usage over-claims have their
own tests: test_gateway_resilience, test_hostile_miner, test_underbilling.)

For each: every client gets a clean OpenAI-shaped error (an error body, or an error event that
ends the stream) or, where another miner can still serve it, that miner's answer; the faulty
miner is ejected, so the requests after it are served by the healthy one; and the books show
each request once: a cut-off stream billed for the tokens it relayed, nothing billed twice,
no hold left."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from teeroute_gateway.ledger import to_nano
from teeroute_sandbox.testing import wait_for

from .faultload import Answer, Load, Restartable, read_books, reconcile
from .procs import Proc, create_key, engine, free_port, lease, started, write_config

pytestmark = pytest.mark.timeout(240)

CREDIT = "10"
FAILURES = 3  # the breaker's consecutive failures (health.BreakerPolicy)
MODES = {"hang": True, "die": True, "garbage": False, "babble": True}  # mode -> streamed


@contextmanager
def faulty(tmp: Path, mode: str) -> Iterator[Proc]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.gateway.faulty_miner", "--port", str(port)]
    with started([*argv, "--mode", mode], port, tmp / f"faulty-{mode}.log", "/health") as proc:
        yield proc


def _with_bad_only_route(config: Path) -> None:
    """The public model `bad-model`, routed only to pool `bad` (no other miner to fall to)."""
    docs = list(yaml.safe_load_all(config.read_text()))
    route = {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": "bad-only"},
        "spec": {
            "model": "bad-model",
            "backends": [{"pool": "bad"}],
            "constraints": {"allowedTee": ["simulated"]},
            "sealing": "off",
        },
    }
    config.write_text(yaml.safe_dump_all([*docs, route]))


def _ask(gw: Restartable, key: str, model: str, stream: bool, n: int) -> list[Answer]:
    async def asking() -> list[Answer]:
        load = Load(gw.url, key, model=model)
        async with httpx.AsyncClient(base_url=gw.url, timeout=60) as http:
            return [await load.one(http, stream=stream) for _ in range(n)]

    return asyncio.run(asking())


def _ejections(gw: Restartable, pool: str) -> float:
    for line in httpx.get(f"{gw.url}/metrics", timeout=5).text.splitlines():
        if line.startswith("teeroute_gateway_endpoint_ejections_total{") and pool in line:
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_faulty_miner_is_ejected_clients_get_clean_errors_and_nothing_is_billed_twice(
    mode: str, tmp_path: Path
) -> None:
    stream = MODES[mode]
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    with engine(tmp_path, "good", "--ttft-ms", "5") as good, faulty(tmp_path, mode) as bad:
        config = write_config(
            tmp_path / "gw.yaml",
            {"good": [("g", good.url)], "bad": [("b", bad.url)]},
            leases={"good": [lease("g")], "bad": [lease("b")]},
            settings={"ledger": ledger, "idleTimeoutS": 1, "holdTtlS": 3},
        )
        _with_bad_only_route(config)
        key = create_key(config, CREDIT)
        gw = Restartable(config, tmp_path)
        gw.start()
        try:
            failed = _ask(gw, key, "bad-model", stream, FAILURES)
            wait_for(lambda: _ejections(gw, '"default/bad"') >= 1, 10, 0.1, "the ejection")
            served = _ask(gw, key, "sim-model", stream, 10)
            wait_for(lambda: read_books(ledger).holds == 0, 30, 0.1, "no holds left")
        finally:
            gw.stop()
    books = read_books(ledger)
    assert all(a.error_code not in (None, "not-openai-shaped") for a in failed), failed
    assert not any(a.delivered for a in failed)
    assert all(a.delivered for a in served), served  # the ejected miner gets none of them
    assert reconcile([*failed, *served], books, to_nano(CREDIT)) == []
    relayed = [a.rid for a in failed if a.status == 200 and a.rid]  # streams cut mid-way
    assert all(books.rows[rid][0] == 1 and books.rows[rid][1] > 0 for rid in relayed), books
