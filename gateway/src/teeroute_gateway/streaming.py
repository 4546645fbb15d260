"""Server-sent events from a miner to the client, passed through with as little work as possible.

Runs of complete events are forwarded as they are, after counting content deltas with a byte
search (no JSON parsing per token). Only two kinds of event are taken apart: the miner's usage
chunk and its `[DONE]`. They are held back, because the gateway ends every stream itself with
one usage chunk carrying the billed counts and the cost, then `[DONE]` (OpenRouter's
convention; the chunk keeps one choice with an empty delta so strict clients don't crash).
An error after the 200 is an SSE event with a top-level `error` and `finish_reason: "error"`.

Events are separated by a blank line (`\\n\\n`), as vLLM, SGLang and OpenAI send them. Only
the new bytes of each chunk are searched for it (teeroute.wire.EventSplitter), and an event is
held back up to MAX_EVENT bytes: a miner that never ends one gets its stream cut, and costs the
event loop each of its bytes once. A run holding an event no OpenAI client could read (HTML,
a traceback, data that is not a JSON object by its braces: `unreadable`) cuts the stream: the
client gets the error event, nothing of that run, and is billed for what it was sent; the
miner is charged a failure (ejection). Checking a run of one-line `data: {...}` events costs
three byte searches (about 0.3 us per run on the 2-core CI machine).

The relay also times the stream (speed.py): the first run of events holding a
content-bearing delta, and the last run of events after it. Text deltas are found by the
search that counts them anyway; the search for a first tool call or reasoning delta runs
only until content was seen (then never again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from teeroute.wire import EventSplitter, EventTooLarge
from teeroute_gateway.metering import USAGE_MARK, Usage, as_float, count_deltas, has_content
from teeroute_gateway.upstream import UpstreamError

SEPARATOR = b"\n\n"
DONE = b"data: [DONE]\n\n"
MAX_EVENT = 1024 * 1024
"""Largest server-sent event taken from a miner (bytes). A token's chunk is a few hundred;
past this the stream is cut (UpstreamError), so a miner cannot make the gateway hold more."""


class StreamRelay:
    def __init__(self, kind: str, clock: Callable[[], float] = time.perf_counter) -> None:
        self.kind = kind
        self.counted = 0
        self.first_content_at: float | None = None
        """When the first content-bearing delta arrived (text, a tool call or reasoning;
        never the headers, a role-only or an empty delta): TTFT's end."""
        self.last_content_at: float | None = None
        """When the last run of events came after the first content (tool-call arguments
        and reasoning are not counted, so every run after the first content moves it)."""
        self._clock = clock
        self.final: dict[str, Any] | None = None
        self.done = False
        self.events = 0
        self._splitter = EventSplitter(MAX_EVENT)

    def feed(self, data: bytes) -> bytes:
        """Bytes to forward now (possibly empty: an event is still incomplete). Raises
        UpstreamError once the miner's unfinished event passes MAX_EVENT."""
        try:
            complete = self._splitter.feed(data)
        except EventTooLarge as exc:
            raise UpstreamError(
                "protocol", f"the miner sent {exc}", before_response=False
            ) from None
        if not complete:
            return b""
        problem = unreadable(complete)
        if problem is not None:  # the events before it in this run are dropped with it
            raise UpstreamError("protocol", f"the miner sent {problem}", before_response=False)
        deltas = count_deltas(complete)
        self.counted += deltas
        self.events += 1
        if self.first_content_at is not None or deltas or has_content(complete):
            self._content_seen()
        if USAGE_MARK.search(complete) is None and b"[DONE]" not in complete:
            return complete
        return self._take_apart(complete)

    def _content_seen(self) -> None:
        """One clock read per run of events from the first content on (none before)."""
        now = self._clock()
        if self.first_content_at is None:
            self.first_content_at = now
        self.last_content_at = now

    def _take_apart(self, complete: bytes) -> bytes:
        kept = []
        for event in complete.split(SEPARATOR):
            if not event.strip():
                continue
            payload = event.removeprefix(b"data:").strip()
            if payload == b"[DONE]":
                self.done = True
            elif USAGE_MARK.search(event):
                self.final = _json_or_none(payload)
            else:
                kept.append(event + SEPARATOR)
        return b"".join(kept)

    def reported(self) -> dict[str, Any] | None:
        return self.final

    def closing(self, usage: Usage, cost_nano: int, request_id: str, model: str) -> bytes:
        """The final usage chunk and [DONE]."""
        chunk = self.final or {
            "id": request_id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "model": model,
        }
        if not chunk.get("choices"):
            empty: dict[str, Any] = {"delta": {}} if self.kind == "chat" else {"text": ""}
            chunk["choices"] = [{"index": 0, **empty, "finish_reason": None}]
        chunk["usage"] = usage_body(chunk.get("usage"), usage, cost_nano)
        return b"data: " + orjson.dumps(chunk) + SEPARATOR + DONE


def unreadable(complete: bytes) -> str | None:
    """Why a run of whole events is not server-sent events an OpenAI client can read (None:
    it is): every line a field (`data`, `event`, `id`, `retry`) or a comment, every event's
    data `[DONE]` or, by its braces, a JSON object. The braces are not a parse (that would
    cost each token a JSON decode): a miner can still send `{` garbage `}`, but not HTML, a
    traceback or a truncated object. Messages name no byte of the event."""
    if complete.endswith(b"}\n\n") and complete.startswith(b"data: {"):
        lines = complete.count(b"\n")
        if lines == 2 or (complete.count(_JOINT) == lines // 2 - 1 and not lines % 2):
            return None  # every event one line `data: {...}`: nearly every run of every engine
    for event in complete.split(SEPARATOR):
        problem = _event_problem(event) if event else None
        if problem is not None:
            return problem
    return None


_JOINT = b"}\n\ndata: {"
"""Where one `data: {...}` event ends and the next begins: a run of n such events has n - 1
of them and 2n newlines, all in its separators."""


def _event_problem(event: bytes) -> str | None:
    data = []
    for line in event.split(b"\n"):
        line = line.rstrip(b"\r")
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if name == b"data":
            data.append(value.removeprefix(b" "))
        elif name not in _OTHER_FIELDS:
            return "a line that is not a server-sent event field"
    payload = b"\n".join(data).strip()
    if not data or payload == b"[DONE]" or (payload[:1] == b"{" and payload[-1:] == b"}"):
        return None
    return "an event whose data is not a JSON object"


_OTHER_FIELDS = (b"event", b"id", b"retry")


def usage_body(reported: Any, usage: Usage, cost_nano: int) -> dict[str, Any]:
    body = dict(reported) if isinstance(reported, dict) else {}
    body["prompt_tokens"] = usage.input_tokens
    body["completion_tokens"] = usage.output_tokens
    body["total_tokens"] = usage.input_tokens + usage.output_tokens
    body["cost"] = as_float(cost_nano)
    return body


def error_event(message: str, kind: str, code: int) -> bytes:
    event = {
        "error": {"message": message, "type": kind, "code": code},
        "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}],
    }
    return b"data: " + orjson.dumps(event) + SEPARATOR


def _json_or_none(payload: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
