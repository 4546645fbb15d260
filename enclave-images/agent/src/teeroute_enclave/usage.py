"""Usage for receipts, read from the engine's answer as it passes through the agent.

The engine's own `usage` object is what the receipt reports (`usage_source = "engine"`): in a
stream, the chunk that `stream_options.include_usage` adds (the agent always sets it); in a
JSON answer, its `usage`. Only when the engine reported none (an engine without
`include_usage`, a stream cut short) does the agent count (`usage_source = "counted"`):

    input_tokens   ceil(bytes of the prompt's text / 4): chat message contents (strings and
                   text parts), a completion's prompt string(s); a prompt of token ids counts
                   one per id. Four bytes per token is the usual English estimate.
    output_tokens  stream: the number of content deltas (`"content"`, `"reasoning_content"`
                   or `"text"` with a non-empty string; an engine sends one per token);
                   JSON answer: ceil(bytes of the choices' text / 4).

An answer with an error status (4xx/5xx) and no usage counts as nothing served: 0 and 0.

Reading is cheap, because the engine's usage normally makes the count unnecessary: a stream's
whole events are kept (up to MAX_KEPT bytes) and looked at only when asked. `json.loads` runs
on the first JSON event (for the served model, as it passes) and on the last event that carries
a non-null `"usage"` (found by searching back from the end); the deltas are counted (a regex,
no parsing) only when no such event is there. A stream longer than MAX_KEPT is read as it
passes instead: its events are split, deltas counted, and every usage-carrying event parsed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from teeroute.wire import EventSplitter, EventTooLarge

BYTES_PER_TOKEN = 4
MAX_TOKENS = 10**9  # as receipts.MAX_TOKENS: a larger count is not believed
MAX_BODY = 16 * 1024 * 1024
"""A JSON answer longer than this is not parsed (its usage is then counted as 0)."""
MAX_KEPT = 1024 * 1024
"""A stream's events are kept for reading at its end up to this many bytes; a longer stream
is read as it passes."""
MAX_PENDING = 256 * 1024
"""A stream's unfinished event is held back (so an error frame never lands inside an event)
up to this size; past it, it is passed on as is."""

_BOUNDARY = re.compile(rb"\r?\n\r?\n")  # between SSE events
_DELTA = re.compile(rb'"(?:reasoning_content|content|text)"\s*:\s*"[^"]')
_NULL_USAGE = re.compile(rb'"usage"\s*:\s*null')
_USAGE_KEY = b'"usage"'  # a quote inside a JSON string is escaped, so this is always a key


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    source: str  # "engine" or "counted"


def estimate(text_bytes: int) -> int:
    """Tokens for `text_bytes` bytes of text, at BYTES_PER_TOKEN."""
    return math.ceil(text_bytes / BYTES_PER_TOKEN)


def prompt_tokens(request: Mapping[str, Any]) -> int:
    """The estimated input tokens of an OpenAI request body (chat or completion)."""
    if isinstance(request.get("messages"), list):
        size = sum(
            _text_bytes(message.get("content"))
            for message in request["messages"]
            if isinstance(message, dict)
        )
        return estimate(size)
    prompt = request.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        return len(prompt)  # token ids
    if isinstance(prompt, list) and all(isinstance(p, list) for p in prompt):
        return sum(len(p) for p in prompt)  # several prompts of token ids
    return estimate(_text_bytes(prompt))


def _text_bytes(content: Any) -> int:
    """Bytes of text in a message content or prompt: a string, or a list of strings and
    `{"type": "text", "text": ...}` parts (other parts, images, count nothing)."""
    if isinstance(content, str):
        return len(content.encode())
    if isinstance(content, list):
        return sum(
            _text_bytes(part.get("text") if isinstance(part, dict) else part) for part in content
        )
    return 0


def engine_usage(value: Any) -> tuple[int, int] | None:
    """(input, output) tokens from an OpenAI `usage` object; None if it is not one."""
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if _count(prompt) and _count(completion):
        return prompt, completion
    return None


def _count(value: Any) -> TypeGuard[int]:
    return type(value) is int and 0 <= value <= MAX_TOKENS  # not bool, not float


def model_of(value: Any) -> str | None:
    model = value.get("model") if isinstance(value, dict) else None
    return model if isinstance(model, str) and model else None


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


class StreamMeter:
    """Follows an engine's SSE stream: its first chunk's model, its usage chunk, its deltas.

    `feed` returns the bytes to pass on now: everything up to the end of the last complete
    event (the rest waits for the next read, or for `tail`). `usage` and `deltas` may be read
    at any time; they cover the events passed on so far.
    """

    def __init__(self) -> None:
        self.model: str | None = None
        self._events = EventSplitter(MAX_PENDING, crlf=True)  # new bytes searched once
        self._seen_json = False
        self._kept: list[bytes] | None = []  # None: past MAX_KEPT, read as it passes
        self._kept_size = 0
        self._kept_usage: tuple[tuple[int, int] | None] | None = None  # (found,) once read
        self._kept_deltas: int | None = None  # once counted
        self._usage: tuple[int, int] | None = None  # of the events read as they passed
        self._deltas = 0

    def feed(self, piece: bytes) -> bytes:
        try:
            ready = self._events.feed(piece)
        except EventTooLarge as exc:  # an unfinished event past MAX_PENDING: passed on as is
            ready = exc.ready + exc.rest
        self._read(ready)
        return ready

    def tail(self) -> bytes:
        """Bytes of an unfinished last event (empty for a well-formed stream)."""
        rest = self._events.take_rest()
        self._read(rest)
        return rest

    @property
    def broken_off(self) -> bool:
        """The stream so far stops inside an event."""
        return self._events.pending_size > 0

    @property
    def usage(self) -> tuple[int, int] | None:
        """The engine's usage: its last usage object that holds two counts."""
        if self._kept is None:
            return self._usage
        if self._kept_usage is None:
            self._kept_usage = (_last_usage(b"".join(self._kept)),)
        return self._kept_usage[0]

    @property
    def deltas(self) -> int:
        if self._kept is None:
            return self._deltas
        if self._kept_deltas is None:
            self._kept_deltas = sum(len(_DELTA.findall(events)) for events in self._kept)
        return self._kept_deltas

    def counted(self) -> int:
        return self.deltas

    def _read(self, events: bytes) -> None:
        if not events:
            return
        if not self._seen_json:
            self._first_json(events)
        if self._kept is None:
            self._scan(events)
            return
        self._kept_usage = self._kept_deltas = None
        self._kept.append(events)
        self._kept_size += len(events)
        if self._kept_size > MAX_KEPT:
            kept, self._kept = self._kept, None
            for earlier in kept:
                self._scan(earlier)

    def _first_json(self, events: bytes) -> None:
        start = 0
        while start < len(events):  # line by line, without splitting all of `events`
            end = events.find(b"\n", start)
            end = len(events) if end < 0 else end
            line = events[start:end]
            if line.startswith(b"data:") and line[5:].strip().startswith(b"{"):
                self._seen_json, self.model = True, model_of(_loads(line[5:]))
                return
            start = end + 1

    def _scan(self, events: bytes) -> None:
        self._deltas += len(_DELTA.findall(events))
        if events.count(_USAGE_KEY) == len(_NULL_USAGE.findall(events)):
            return  # no usage here but `"usage": null` (in every chunk with include_usage)
        for event in _BOUNDARY.split(events):
            if _USAGE_KEY in event and not _NULL_USAGE.search(event):
                for line in event.splitlines():
                    self._usage = _line_usage(line) or self._usage


def _last_usage(data: bytes) -> tuple[int, int] | None:
    """The last usage object holding two counts in `data` (whole SSE events), searching back
    from the end: in a stream with `include_usage` that is its last chunk."""
    end = len(data)
    while (at := data.rfind(_USAGE_KEY, 0, end)) >= 0:
        end = at
        if _NULL_USAGE.match(data, at):
            continue
        line_start = data.rfind(b"\n", 0, at) + 1
        line_end = data.find(b"\n", at)
        found = _line_usage(data[line_start : line_end if line_end >= 0 else len(data)])
        if found is not None:
            return found
        end = line_start
    return None


def _line_usage(line: bytes) -> tuple[int, int] | None:
    """The usage of a `data:` line holding a JSON chunk with a `usage` that holds two counts."""
    line = line.rstrip(b"\r")
    if not (line.startswith(b"data:") and line[5:].strip().startswith(b"{")):
        return None
    chunk = _loads(line[5:])
    return engine_usage(chunk.get("usage")) if isinstance(chunk, dict) else None


class BodyMeter:
    """Follows a JSON answer: kept (up to MAX_BODY) and read once it is whole."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.usage: tuple[int, int] | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._text_bytes = 0

    def feed(self, piece: bytes) -> bytes:
        self._size += len(piece)
        if self._size <= MAX_BODY:
            self._parts.append(piece)
        return piece

    def tail(self) -> bytes:
        body = _loads(b"".join(self._parts)) if self._size <= MAX_BODY else None
        self._parts = []
        self.model = model_of(body)
        if isinstance(body, dict):
            self.usage = engine_usage(body.get("usage"))
            self._text_bytes = _choices_text_bytes(body.get("choices"))
        return b""

    @property
    def broken_off(self) -> bool:
        return False

    def counted(self) -> int:
        return estimate(self._text_bytes)


def _choices_text_bytes(choices: Any) -> int:
    if not isinstance(choices, list):
        return 0
    size = 0
    for choice in choices:
        if isinstance(choice, dict):
            message = choice.get("message")
            if isinstance(message, dict):
                size += _text_bytes(message.get("content"))
                size += _text_bytes(message.get("reasoning_content"))
            size += _text_bytes(choice.get("text"))
    return size


Meter = StreamMeter | BodyMeter


def meter_for(content_type: str) -> Meter:
    """A stream meter for an SSE answer, a body meter for anything else."""
    media = content_type.split(";", 1)[0].strip().lower()
    return StreamMeter() if media == "text/event-stream" else BodyMeter()


def account(meter: Meter, input_estimate: int, status: int) -> Usage:
    """What the receipt reports: the engine's usage, else the agent's count."""
    if meter.usage is not None:
        return Usage(*meter.usage, source="engine")
    if status >= 400:
        return Usage(0, 0, source="counted")
    return Usage(min(input_estimate, MAX_TOKENS), min(meter.counted(), MAX_TOKENS), "counted")
