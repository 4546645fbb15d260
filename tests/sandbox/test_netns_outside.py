"""A thread that entered a namespace can step back out for a block (a download from a test
that joined the sandbox), and is back inside afterwards. Needs root (ip netns)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from teeroute_sandbox import netns


def current() -> int:
    return Path("/proc/thread-self/ns/net").stat().st_ino


def test_outside_returns_to_the_first_namespace_for_the_block() -> None:
    name = f"tr-out-{uuid.uuid4().hex[:6]}"
    netns.create(name)
    seen: dict[str, int] = {}
    failure: list[BaseException] = []

    def body() -> None:
        try:
            seen["start"] = current()
            netns.enter(name)
            seen["inside"] = current()
            with netns.outside():
                seen["outside"] = current()
            seen["after"] = current()
        except BaseException as exc:  # reported below, on the test's thread
            failure.append(exc)

    try:
        worker = threading.Thread(target=body)
        worker.start()
        worker.join(timeout=30)
    finally:
        netns.delete(name)
    assert not failure, failure
    target = seen["inside"]
    assert target != seen["start"]
    assert seen["outside"] == seen["start"]
    assert seen["after"] == target
