"""The agent's own timing of a sealed stream (teeroute_enclave.timing) and who may get it in
a receipt (sealed.wants_timings): the definitions are the gateway's (docs/scores.md)."""

from __future__ import annotations

from typing import Any

import pytest

from teeroute_enclave.sealed import wants_timings
from teeroute_enclave.timing import StreamTimer

ROLE = b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
EMPTY = b'data: {"choices":[{"delta":{}}]}\n\n'
TEXT = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
TOOL = b'data: {"choices":[{"delta":{"tool_calls": [{"index":0}]}}]}\n\n'
REASONING = b'data: {"choices":[{"delta":{"reasoning_content":"hm"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n'


@pytest.mark.parametrize(
    ("runs", "tokens", "expected"),
    [
        # role and empty deltas at once do not end the TTFT; the first text does
        ([(ROLE, 1.001), (EMPTY, 1.002), (TEXT, 1.150), (TEXT, 1.160), (USAGE, 1.180)], 4,
         {"ttft_us": 150_000, "tpot_us": 10_000}),
        ([(ROLE, 1.001), (TOOL, 1.050)], 1, {"ttft_us": 50_000}),  # a tool call; no TPOT
        ([(REASONING, 1.020), (TEXT, 1.040)], 3, {"ttft_us": 20_000, "tpot_us": 10_000}),
        ([(ROLE, 1.001), (EMPTY, 1.002), (USAGE, 1.003)], 0, {}),  # no content: nothing
    ],
)  # fmt: skip
def test_stream_timer(runs: list[tuple[bytes, float]], tokens: int, expected: Any) -> None:
    timer = StreamTimer(received_at=1.0)
    for events, now in runs:
        timer.feed(events, now)
    assert timer.fields(tokens) == expected


@pytest.mark.parametrize(
    ("gateway", "client", "wanted"),
    [
        ({"receipt_timings": True}, None, True),  # gateway-sealed: the gateway reads it
        ({}, None, False),  # a gateway from before timings
        ({"receipt_timings": True}, {"receipt_timings": True}, True),
        ({"receipt_timings": True}, {}, False),  # a client from before timings
        ({"receipt_timings": "yes"}, None, False),  # only true is true
        ({}, {"receipt_timings": True}, False),
    ],
)
def test_timings_go_only_to_readers_that_asked(
    gateway: dict[str, Any], client: dict[str, Any] | None, wanted: bool
) -> None:
    assert wants_timings(gateway, client) is wanted
