"""The kinds of request each mode is loaded with: whether the answer streams and how long it is
(max_tokens). The bench prompt's natural answer is 255 tokens, so a kind's answers are
min(max_tokens, 255) tokens long. A kind names its two scenarios (moderate load, max load),
its row of the comparison, its goals, its table in the report and its client's-cost column;
a new kind is one more line in KINDS. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gatewaybench.scenarios import STREAM_MAX_TOKENS

MAX_TOKENS = 16  # the short answers (the first results' only length)


@dataclass(frozen=True)
class Kind:
    name: str  # the key in the JSON (comparison, probes, client cost)
    stream: bool
    max_tokens: int
    title: str  # the report's heading, before "(max_tokens N)"
    prefix: str  # of its scenarios' names: `{prefix}moderate`, `{prefix}max`

    @property
    def moderate(self) -> str:
        """Its latency scenario: few connections with a think time."""
        return f"{self.prefix}moderate"

    @property
    def maximum(self) -> str:
        """Its throughput scenario: many connections, no think time."""
        return f"{self.prefix}max"

    @property
    def label(self) -> str:
        return self.name.replace("_", "-")

    @property
    def heading(self) -> str:
        usage = ", usage included" if self.stream else ""
        return f"{self.title} (max_tokens {self.max_tokens}{usage})"


KINDS = (
    Kind("non_streamed", False, MAX_TOKENS, "Non-streamed requests", ""),
    Kind("streamed", True, MAX_TOKENS, "Streamed requests", "streamed_"),
    # as long as gatewaybench's streams (e2e/bench/gateway.py): 255 tokens each
    Kind("streamed_long", True, STREAM_MAX_TOKENS, "Long streamed answers", "streamed_long_"),
)
BY_NAME = {kind.name: kind for kind in KINDS}


def select(text: str) -> tuple[Kind, ...]:
    """The kinds named in `a,b` (spaces ignored), in KINDS' order; ValueError names an unknown
    one or an empty list."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"no kind given (known: {', '.join(BY_NAME)})")
    if unknown := [name for name in names if name not in BY_NAME]:
        raise ValueError(f"unknown kind {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    return tuple(kind for kind in KINDS if kind.name in names)


def describe(kinds: tuple[Kind, ...]) -> dict[str, dict[str, Any]]:
    """The document's `kinds`: {name: what its requests are}."""
    return {
        kind.name: {
            "stream": kind.stream,
            "max_tokens": kind.max_tokens,
            "scenarios": [kind.moderate, kind.maximum],
        }
        for kind in kinds
    }


def measured(doc: Mapping[str, Any]) -> tuple[Kind, ...]:
    """The kinds a document measured (all of them if it does not say)."""
    named = doc.get("kinds")
    return KINDS if named is None else tuple(k for k in KINDS if k.name in named)
