"""Keeping the operator's resident memory near what it uses.

glibc gives each thread that allocates its own malloc arena (up to 8 per core), and memory
freed in an arena returns to the system only from its top. The operator parses large JSON
bodies on the event loop and verifies evidence in worker threads; after 500 pools came up
its RSS stayed at ~530 MB while its live Python objects were a fraction of that
(e2e/bench/operatorscale.py). Two arenas and a trim after bursts hand the rest back.
Elsewhere than glibc (musl, macOS) these calls do nothing.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)
M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 2


def _libc() -> Any | None:
    """The C library already loaded into this process (no `find_library`, which runs
    ldconfig in a subprocess at start-up); None without glibc's two calls."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas; call before any thread starts. Whether it took."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Return free heap memory to the system (glibc `malloc_trim(0)`). Whether any was."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


TRIM_EVERY_S = 60.0


def start_trimming(seconds: float = TRIM_EVERY_S) -> threading.Thread | None:
    """`trim` every `seconds` from a daemon thread (outside the event loop, which it would
    stall for a few ms on a large heap, and outside kopf's task bookkeeping at shutdown).
    None where there is nothing to trim with."""
    if _LIBC is None:
        return None

    def loop() -> None:
        while True:
            time.sleep(seconds)
            trim()

    thread = threading.Thread(target=loop, name="malloc-trim", daemon=True)
    thread.start()
    return thread
