"""Progress lines on stderr: one per step, with what it produced and how long it took."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"images [{elapsed:6.1f}s] {message}", file=self.stream, flush=True)


def size(count: int) -> str:
    return f"{count / 1e6:.1f} MB"
