"""Token counts and costs: what the miner reported, what we counted, what it costs.

Money is integer nano-units of the billing currency (1e-9), as in the ledger. Prices are per
million tokens, so one token at price P costs P x 1000 nano-units. Costs round up.

Counts keep a flag saying whether the miner reported them (`usage` in its response) or the
gateway counted them (content deltas of a stream; the size estimate for input). A miner's
claim above `CLAIM_CAP` x our own count is not believed (billing.py decides the bill).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from teeroute_gateway.catalog import Pool
from teeroute_gateway.ledger import from_nano

CLAIM_CAP = 10
USAGE_MARK = re.compile(rb'"usage"\s*:\s*\{')
_DELTA = re.compile(rb'"(?:content|text)": ?"(?!")')
"""A non-empty `"content"` or `"text"` string (compact or with one space, as engines write
them): one search per run of events, a quarter of the cost of counting each form apart."""
_OTHER_CONTENT = re.compile(
    rb'"tool_calls": ?\[ ?\{|"(?:reasoning_content|reasoning)": ?"(?!")|"function_call": ?\{'
)
"""A tool call (or the legacy function call) or a non-empty reasoning delta."""


def cost_nano(pool: Pool, input_tokens: int, output_tokens: int) -> int:
    exact = (pool.input_per_million * input_tokens + pool.output_per_million * output_tokens) * 1000
    return math.ceil(exact)


def display(nano: int) -> str:
    """An amount for people and headers: exact, without trailing zeros (0.0000017, 12)."""
    return f"{from_nano(nano).normalize():f}"


def as_float(nano: int) -> float:
    """An amount where the OpenAI/OpenRouter shape wants a number (usage.cost, spans)."""
    return float(from_nano(nano))


@dataclass(slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    input_reported: bool
    output_reported: bool


def reported_usage(obj: Any) -> tuple[int | None, int | None]:
    usage = obj.get("usage") if isinstance(obj, dict) else None
    if not isinstance(usage, dict):
        return None, None
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def count_completion_text(obj: Any) -> int:
    """Our own rough count for a non-streamed answer without usage: ~4 characters a token."""
    total = 0
    for choice in (obj.get("choices") or []) if isinstance(obj, dict) else []:
        if not isinstance(choice, dict):
            continue
        text = choice.get("text")
        if not isinstance(text, str):
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
        if isinstance(text, str):
            total += (len(text) + 3) // 4
    return total


def has_content(chunk: bytes) -> bool:
    """Whether a run of SSE events holds a tool call or a reasoning delta (text is found by
    `count_deltas`): a first token that is not text still ends the time to first token."""
    return _OTHER_CONTENT.search(chunk) is not None


def count_deltas(chunk: bytes) -> int:
    """Non-empty content deltas in a run of SSE events (engines send about one token each)."""
    return len(_DELTA.findall(chunk))
