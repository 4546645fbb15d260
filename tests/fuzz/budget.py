"""The fuzz suite's budget: a fixed seed and a fixed number of examples per property.

Every property runs with `derandomize=True` (Hypothesis seeds itself from the test's own
code), so CI explores the same inputs on every run and a failure reproduces. The defaults
give the whole suite about two minutes on a 2-core machine; FUZZ_EXAMPLES=N runs N examples
of every property instead (a long run: tests/fuzz/README.md), with no time limit.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

F = TypeVar("F", bound=Callable[..., Any])

LONG_RUN = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
"""Examples per property for a long run; 0: the CI budget below."""
EXAMPLES = 2500
"""Examples per property in CI."""
SHAPES = 1250
"""Examples per property that builds JSON documents of any shape (each costs more)."""
TIMEOUT_S = 0 if LONG_RUN else 300
"""pytest-timeout per fuzz test (a parser that hangs fails here); none in a long run."""
SLOW_EXAMPLE = dt.timedelta(seconds=10)
"""One input taking this long is a finding (a quadratic path a peer could drive)."""


def budget(examples: int = EXAMPLES) -> Callable[[F], F]:
    """Hypothesis settings for a property worth `examples` examples in CI."""
    return settings(
        max_examples=LONG_RUN or examples,
        derandomize=True,
        database=None,
        deadline=SLOW_EXAMPLE,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )
