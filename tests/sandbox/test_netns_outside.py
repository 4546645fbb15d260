"""A thread that entered a namespace can step back out for a block (a download from a test
that joined the sandbox), and is back inside afterwards. Needs root (ip netns)."""

from __future__ import annotations

import os
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
    assert netns._outside_fd is not None
    began_in = os.fstat(netns._outside_fd).st_ino  # the process's first namespace
    # (the thread may have started elsewhere: in the sandbox's, if this session entered it)
    target = seen["inside"]
    assert target not in (seen["start"], began_in)
    assert seen["outside"] == began_in
    assert seen["after"] == target
