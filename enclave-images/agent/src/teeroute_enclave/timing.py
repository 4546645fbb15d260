"""The agent's own timing of a sealed stream, inside the TEE, for its receipt.

    StreamTimer(received_at)   fed each run of SSE events the engine gave, as it is relayed
    .fields(output_tokens)     -> {"ttft_us", "tpot_us"} for the receipt (only what was seen)

The definitions are the gateway's (docs/scores.md): TTFT ends at the first content-bearing
delta (non-empty text, a tool call or reasoning; never the headers, a role-only or an empty
delta); "last content" is the last run of events read after the first content; TPOT is
(last content - first content) / (output tokens - 1). The clock starts when the agent opened
the request, so the figure leaves out the hop between the gateway and the agent.
"""

from __future__ import annotations

import re

from teeroute.sealing.receipt_body import MAX_MICROS

_CONTENT = re.compile(
    rb'"(?:content|text|reasoning_content|reasoning)": ?"(?!")'
    rb'|"tool_calls": ?\[ ?\{|"function_call": ?\{'
)
"""A content-bearing delta in a run of SSE events (searched only until the first)."""


class StreamTimer:
    """First and last content of one stream, on the agent's monotonic clock (seconds)."""

    def __init__(self, received_at: float) -> None:
        self.received_at = received_at
        self.first: float | None = None
        self.last: float | None = None

    def feed(self, events: bytes, now: float) -> None:
        if self.first is None:
            if not events or _CONTENT.search(events) is None:
                return
            self.first = now
        self.last = now

    def fields(self, output_tokens: int) -> dict[str, int]:
        """The receipt's timing fields; none when no content came."""
        if self.first is None or self.last is None:
            return {}
        out = {"ttft_us": _micros(self.first - self.received_at)}
        if output_tokens > 1:
            out["tpot_us"] = _micros((self.last - self.first) / (output_tokens - 1))
        return out


def _micros(seconds: float) -> int:
    return min(MAX_MICROS, max(0, round(seconds * 1e6)))
