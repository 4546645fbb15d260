"""Coalescing triggers: a burst of pokes for one key is one run; a poke while it runs is one
more run after it; keys do not wait for each other."""

from __future__ import annotations

import asyncio

from teeroute_operator.coalesce import Coalescer


def test_a_burst_of_pokes_is_one_run_and_a_poke_during_the_run_is_one_more() -> None:
    runs: list[str] = []
    release = asyncio.Event()

    async def work(key: str) -> None:
        runs.append(key)
        if runs.count("ns-a") == 1 and key == "ns-a":
            await release.wait()  # ns-a's first run is slow; ns-b does not wait for it

    async def scenario() -> None:
        coalescer = Coalescer(work, delay_s=0.01)
        for _ in range(100):
            coalescer.poke("ns-a")
        coalescer.poke("ns-b")
        await asyncio.sleep(0.05)
        assert sorted(runs) == ["ns-a", "ns-b"]
        for _ in range(5):
            coalescer.poke("ns-a")  # while its first run is still going
        release.set()
        await asyncio.sleep(0.05)
        assert runs.count("ns-a") == 2  # exactly one more
        coalescer.poke("ns-a")
        await asyncio.sleep(0.05)
        assert runs.count("ns-a") == 3  # idle again: a new poke runs anew

    asyncio.run(scenario())


def test_a_failing_run_does_not_stop_later_ones() -> None:
    calls: list[int] = []

    async def work(key: str) -> None:
        calls.append(1)
        raise RuntimeError("the apiserver hiccuped")

    async def scenario() -> None:
        coalescer = Coalescer(work, delay_s=0.01)
        coalescer.poke("ns")
        await asyncio.sleep(0.05)
        coalescer.poke("ns")
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert len(calls) == 2
