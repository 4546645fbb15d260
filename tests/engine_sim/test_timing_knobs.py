"""The engine simulator's knobs for the gateway's speed tests (docs/scores.md): the role delta
sent at once (as vLLM does) and empty deltas padding the wait for the first token. The
knob that slows an engine under load is exercised over HTTP in tests/gateway/test_ttft.py."""

from __future__ import annotations

import json

from teeroute_engine_sim.settings import EngineSettings
from tests.engine_sim.test_paced_writes import content_tokens, writes


def deltas(write: bytes) -> list[dict[str, object]]:
    return [
        json.loads(event[6:])["choices"][0]["delta"]
        for event in write.split(b"\n\n")
        if event.startswith(b"data: {") and json.loads(event[6:])["choices"]
    ]


def test_role_first_sends_the_role_delta_alone_before_the_first_token() -> None:
    found = writes(EngineSettings(ttft_ms=20, tokens_per_s=1000, role_first=True), 4)
    assert deltas(found[0]) == [{"role": "assistant", "content": ""}]
    assert [content_tokens(w) for w in found[1:]] == [1, 1, 1, 1]


def test_padding_sends_empty_deltas_until_the_first_token() -> None:
    settings = EngineSettings(ttft_ms=40, tokens_per_s=1000, role_first=True, pad_empty_ms=5)
    found = writes(settings, 4)
    first_token = next(i for i, w in enumerate(found) if content_tokens(w))
    padding = [d for w in found[1:first_token] for d in deltas(w)]
    assert len(padding) >= 2 and all(d == {"content": ""} for d in padding)
    assert sum(content_tokens(w) for w in found) == 4
