"""Failures the gateway must absorb or report honestly: a miner dying under load, leases
expiring, a stream breaking after the 200, a client leaving, concurrent spending, limits
shared by two gateway processes through a real Redis."""

from __future__ import annotations

import asyncio
import collections
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.gateway.procs import create_key, engine, gateway, lease, write_config
from tests.gateway.redis_server import RedisServer, running_redis

BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


async def _fire(
    url: str, key: str, n: int, concurrency: int, body: dict[str, object] = BODY
) -> collections.Counter[int]:
    limits = httpx.Limits(max_connections=concurrency)
    statuses: collections.Counter[int] = collections.Counter()
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:

        async def one() -> None:
            async with gate:
                answer = await http.post(
                    "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
                )
                statuses[answer.status_code] += 1

        await asyncio.gather(*(one() for _ in range(n)))
    return statuses


def test_one_of_three_miners_dies_under_load_and_no_client_sees_an_error(tmp_path: Path) -> None:
    with (
        engine(tmp_path, "a", "--ttft-ms", "5") as a,
        engine(tmp_path, "b", "--ttft-ms", "5") as b,
        engine(tmp_path, "c", "--ttft-ms", "5") as c,
    ):
        config = write_config(
            tmp_path / "gw.yaml",
            {"p1": [("a", a.url)], "p2": [("b", b.url)], "p3": [("c", c.url)]},
            leases={"p1": [lease("a")], "p2": [lease("b")], "p3": [lease("c")]},
        )
        key = create_key(config, "100")
        with gateway(config) as gw:

            async def scenario() -> collections.Counter[int]:
                load = asyncio.create_task(_fire(gw.url, key, 600, 24))
                await asyncio.sleep(0.5)
                b.stop()  # a miner dies mid-run: connections refused from now on
                return await load

            statuses = asyncio.run(scenario())
            metrics = httpx.get(f"{gw.url}/metrics").text
    assert statuses == {200: 600}
    assert (
        'teeroute_gateway_upstream_attempts_total{outcome="connect",pool="default/p2"}' in metrics
    )


def test_expired_attestation_is_never_routed_even_without_any_update(tmp_path: Path) -> None:
    with engine(tmp_path, "fresh") as fresh, engine(tmp_path, "stale") as stale:
        expiry = time.monotonic() + 14
        config = write_config(
            tmp_path / "gw.yaml",
            {
                "fresh": [("f", fresh.url)],
                "stale": [("s", stale.url)],
                "expired": [("x", stale.url)],
            },
            leases={
                "fresh": [lease("f", expires_in_s=15)],
                "stale": [lease("s", attested_ago_s=900)],
                "expired": [lease("x", expires_in_s=-1)],
            },
            route={"constraints": {"allowedTee": ["simulated"], "maxAttestationAge": "10m"}},
        )
        key = create_key(config, "10")
        with gateway(config) as gw:
            pools = collections.Counter()
            for _ in range(30):
                answer = httpx.post(
                    f"{gw.url}/v1/chat/completions",
                    json=BODY,
                    headers={"authorization": f"Bearer {key}"},
                )
                assert answer.status_code == 200
                pools[answer.headers["x-teeroute-pool"]] += 1
            assert pools == {"default/fresh": 30}  # too old (15 min) and expired leases get nothing
            time.sleep(
                max(0.0, expiry - time.monotonic()) + 2
            )  # the last lease runs out; nobody touches the config
            answer = httpx.post(
                f"{gw.url}/v1/chat/completions",
                json=BODY,
                headers={"authorization": f"Bearer {key}"},
            )
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "no_attested_endpoint"


def test_200_concurrent_requests_never_spend_more_than_the_balance(tmp_path: Path) -> None:
    with engine(tmp_path, "a") as upstream:
        # each request holds at most (body/3 + 8 input + 100 output tokens) x 1 USD/M = ~0.00015
        config = write_config(
            tmp_path / "gw.yaml",
            {"p": [("a", upstream.url)]},
            leases={"p": [lease("a")]},
            prices={"p": ("1", "1")},
        )
        body = {**BODY, "max_tokens": 100}
        key = create_key(config, "0.0075")  # covers ~50 holds
        with gateway(config) as gw:
            statuses = asyncio.run(_fire(gw.url, key, 200, 200, body))
        with sqlite3.connect(tmp_path / "ledger.db") as db:
            spent = db.execute(
                "SELECT COALESCE(SUM(charged_nano), 0), COUNT(*) FROM ledger_usage"
            ).fetchone()
            balance, held = db.execute(
                "SELECT balance_nano, held_nano FROM ledger_accounts"
            ).fetchone()
    assert set(statuses) <= {200, 402} and statuses[402] > 0
    assert spent[1] == statuses[200]
    assert spent[0] <= 7_500_000  # never more than the 0.0075 USD of credit
    assert balance == 7_500_000 - spent[0] and balance >= 0 and held == 0


def test_a_stream_that_breaks_after_the_200_ends_with_an_error_event(tmp_path: Path) -> None:
    with engine(tmp_path, "slow", "--tokens-per-s", "20") as slow:
        config = write_config(
            tmp_path / "gw.yaml", {"p": [("a", slow.url)]}, leases={"p": [lease("a")]}
        )
        key = create_key(config, "10")
        with gateway(config) as gw:
            sdk = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
            stream = sdk.chat.completions.create(
                model="sim-model", messages=BODY["messages"], max_tokens=200, stream=True
            )  # type: ignore[arg-type]
            received = 0
            with pytest.raises(openai.APIError) as raised:
                for _chunk in stream:
                    received += 1
                    if received == 3:
                        slow.stop(signal.SIGKILL)  # the miner dies; no orderly end
    assert received >= 3
    assert "stopped mid-stream" in str(raised.value)


def test_a_client_that_leaves_mid_stream_stops_the_miner_and_is_billed_for_what_it_got(
    tmp_path: Path,
) -> None:
    with engine(tmp_path, "slow", "--tokens-per-s", "20") as slow:
        config = write_config(
            tmp_path / "gw.yaml", {"p": [("a", slow.url)]}, leases={"p": [lease("a")]}
        )
        key = create_key(config, "10")
        with gateway(config) as gw:
            body = {**BODY, "max_tokens": 400, "stream": True}
            with httpx.stream(
                "POST",
                f"{gw.url}/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {key}"},
            ) as answer:
                rid = answer.headers["x-request-id"]
                lines = answer.iter_lines()
                for _ in range(6):
                    next(lines)
            record = None
            deadline = time.monotonic() + 10
            while record is None and time.monotonic() < deadline:
                found = httpx.get(
                    f"{gw.url}/v1/generation",
                    params={"id": rid},
                    headers={"authorization": f"Bearer {key}"},
                )
                record = found.json()["data"] if found.status_code == 200 else None
                time.sleep(0.1)
    assert record is not None and record["outcome"] == "cancelled"
    assert 1 <= record["output_tokens"] < 40  # 400 would take 20 s; we left after a few
    assert record["output_reported"] is False  # counted by us: the miner never sent usage


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    with running_redis(tmp_path / "redis") as server:
        yield server


def test_rate_limits_hold_across_two_gateway_processes_sharing_redis(
    tmp_path: Path, redis: RedisServer
) -> None:
    with engine(tmp_path, "a") as upstream:
        config = write_config(
            tmp_path / "gw.yaml",
            {"p": [("a", upstream.url)]},
            leases={"p": [lease("a")]},
            settings={"rateLimiter": redis.url},
            route={"rateLimits": {"requestsPerMinute": 20}},
        )
        key = create_key(config, "10")
        with gateway(config, "gw1") as one, gateway(config, "gw2") as two:
            answers = [
                httpx.post(
                    f"{gw.url}/v1/chat/completions",
                    json=BODY,
                    headers={"authorization": f"Bearer {key}"},
                )
                for _ in range(15)
                for gw in (one, two)
            ]
    statuses = collections.Counter(a.status_code for a in answers)
    assert statuses == {200: 20, 429: 10}
    limited = next(a for a in answers if a.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limit_requests"
