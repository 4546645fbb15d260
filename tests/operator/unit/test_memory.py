"""The operator's malloc settings (memory.py) take on glibc, where it runs in its image."""

from __future__ import annotations

import ctypes.util
import platform

import pytest

from teeroute_operator import memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt and malloc_trim")
def test_arenas_are_capped_and_the_heap_can_be_trimmed_on_glibc() -> None:
    assert ctypes.util.find_library("c")
    assert memory.limit_arenas()
    blocks = [bytearray(4096) for _ in range(10_000)]  # ~40 MB, then freed
    del blocks
    assert memory.trim()  # something was handed back


def test_the_trimming_thread_is_a_daemon() -> None:
    thread = memory.start_trimming(3600)
    if thread is None:
        pytest.skip("no glibc: nothing to trim with")
    assert thread.daemon and thread.is_alive()
