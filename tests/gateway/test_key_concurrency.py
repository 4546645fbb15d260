"""One API key cannot take every slot of a gateway worker (`maxInFlightPerKey`): its requests
past the limit get 429 `concurrency_limit_exceeded` with Retry-After at once, while another
key's requests are served; the key's slots come back when its requests end, whatever way
they end. A real gateway in front of a slow engine simulator (2 s to the first token)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from teeroute_gateway.errors import RateLimited
from teeroute_gateway.key_slots import KeySlots, over
from tests.gateway.procs import Proc, create_key, engine, gateway, lease, metric, write_config

pytestmark = pytest.mark.timeout(120)

BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
LIMIT = 2


@pytest.mark.parametrize(
    ("in_flight", "limit", "refused"),
    [(0, None, False), (10**6, None, False), (0, 1, False), (1, 1, True), (1, 2, False)],
)
def test_over(in_flight: int, limit: int | None, refused: bool) -> None:
    assert over(in_flight, limit) is refused


def test_slots_are_counted_per_account_and_come_back() -> None:
    slots = KeySlots(2)
    slots.take("a")
    slots.take("a")
    slots.take("b")  # another account is not held back by a's
    with pytest.raises(RateLimited) as refused:
        slots.take("a")
    assert refused.value.code == "concurrency_limit_exceeded"
    assert refused.value.headers == {"Retry-After": "1"}
    slots.give_back("a")
    slots.take("a")
    for _ in range(3):
        slots.give_back("a")
    assert slots.in_flight("a") == 0  # never below zero, and forgotten at zero
    unlimited = KeySlots(None)
    for _ in range(1000):
        unlimited.take("a")
    assert unlimited.in_flight("a") == 0  # not even counted


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str, str]]:
    tmp = tmp_path_factory.mktemp("per-key")
    with engine(tmp, "slow", "--ttft-ms", "2000") as upstream:
        config = write_config(
            tmp / "gw.yaml",
            {"p": [("a", upstream.url)]},
            leases={"p": [lease("a")]},
            settings={"maxInFlightPerKey": LIMIT},
        )
        hog, other = create_key(config, "100"), create_key(config, "100")
        with gateway(config) as proc:
            yield proc, hog, other


async def _at_once(url: str, keys: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(keys))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        return list(
            await asyncio.gather(
                *(
                    http.post(
                        "/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {k}"}
                    )
                    for k in keys
                )
            )
        )


def test_a_key_past_its_limit_gets_429_while_another_is_served(
    served: tuple[Proc, str, str],
) -> None:
    gw, hog, other = served
    answers = asyncio.run(_at_once(gw.url, [hog] * 5 + [other] * LIMIT))
    hogs, others = answers[:5], answers[5:]
    assert sorted(a.status_code for a in hogs) == [200] * LIMIT + [429] * 3
    for refused in (a for a in hogs if a.status_code == 429):
        assert refused.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert int(refused.headers["retry-after"]) >= 1
    assert [a.status_code for a in others] == [200] * LIMIT
    refusals = 'teeroute_gateway_limit_refusals_total{reason="key_concurrency"}'
    assert metric(gw, refusals) == 3
    # the slots came back: the same key is served again, up to its limit
    again = asyncio.run(_at_once(gw.url, [hog] * LIMIT))
    assert [a.status_code for a in again] == [200] * LIMIT


def test_requests_that_fail_give_their_slots_back(served: tuple[Proc, str, str]) -> None:
    gw, hog, _ = served
    for _ in range(LIMIT + 2):  # refused after the key's slot was taken (a bad body)
        bad = httpx.post(
            f"{gw.url}/v1/chat/completions",
            content=b"{not json",
            headers={"authorization": f"Bearer {hog}", "content-type": "application/json"},
            timeout=30,
        )
        assert bad.status_code == 400
    assert [a.status_code for a in asyncio.run(_at_once(gw.url, [hog] * LIMIT))] == [200] * 2
