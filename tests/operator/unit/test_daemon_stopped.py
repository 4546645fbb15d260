"""The sweep daemon's `stopped` flag (handlers.Stopped): a pause ends when kopf sets the flag
or when its time is up, and never leaves a task behind that ends in an error (kopf re-raises
such errors at shutdown, making a SIGTERM exit 1)."""

from __future__ import annotations

import asyncio

from teeroute_operator.handlers import Stopped


class Flag:
    """What kopf hands a daemon: true once the daemon must stop."""

    def __init__(self) -> None:
        self.set = False

    def __bool__(self) -> bool:
        return self.set


def test_a_pause_lasts_its_time_while_the_flag_is_down() -> None:
    async def pause() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await Stopped(Flag()).wait(0.3)
        return loop.time() - began

    assert asyncio.run(pause()) >= 0.3


def test_a_pause_ends_soon_after_the_flag_is_set_and_leaves_no_task() -> None:
    async def pause() -> tuple[float, int]:
        flag = Flag()
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, lambda: setattr(flag, "set", True))
        began = loop.time()
        stopped = Stopped(flag)
        await stopped.wait(30)
        assert stopped
        return loop.time() - began, len(asyncio.all_tasks()) - 1

    waited, others = asyncio.run(pause())
    assert waited < 10  # the flag ended it, not the 30 s timeout (the restart tests allow 10 s)
    assert others == 0
