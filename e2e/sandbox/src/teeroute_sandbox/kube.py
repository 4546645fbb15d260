"""Talking to the sandbox's apiserver from a process outside its network namespace.

A network namespace belongs to a thread, so `in_netns` runs a function on a short-lived
thread that has entered the namespace: sockets it opens live there, the caller stays put.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from teeroute_sandbox import netns

T = TypeVar("T")


def in_netns(name: str, fn: Callable[[], T]) -> T:
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            netns.enter(name)
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread below
            error.append(exc)

    worker = threading.Thread(target=body, name=f"netns-{name}", daemon=True)
    worker.start()
    worker.join()
    if error:
        raise error[0]
    return result[0]
