"""A request's output bound: the most tokens an engine may produce for it, as every party
computes it (docs/sealed-mode.md, "the output bound").

    asked_max_tokens(body)   -> the per-choice limit the client asked for, or None
    choices(body, path)      -> how many completions one request asks for
    output_bound(per, n)     -> per-choice limit x choices: what credit is held for

The gateway holds credit for the bound and sends the miner a body whose per-choice limit times
its choices equals it; a sealed request carries the bound in its authenticated
`meta.max_tokens`, the client SDK always sets it, and the enclave agent enforces it on the
opened body. When a body gives both `max_tokens` and `max_completion_tokens` and they differ,
the smaller one is the limit (engines differ in which one they obey, so both are sent as it).
`n`, `best_of` (completions) and a list of prompts (completions) each multiply the output.
Malformed values raise BoundInvalid naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")
COMPLETIONS = "/v1/completions"
MAX_CHOICES = 128
"""More completions in one request than this is refused: each is held for in full."""
DEFAULT_MAX_TOKENS = 4096
"""The per-choice limit the SDK puts in `meta.max_tokens` when the caller set none (the
gateway's own default, `defaultMaxTokens`)."""


class BoundInvalid(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def asked_max_tokens(body: Mapping[str, Any]) -> int | None:
    """The smaller of `max_tokens` and `max_completion_tokens` where given; None: neither."""
    found = [_positive(body, name) for name in LIMIT_FIELDS if body.get(name) is not None]
    return min(found) if found else None


def choices(body: Mapping[str, Any], path: str) -> int:
    """n x best_of x prompts: how many completions the engine generates for `body`."""
    count = _positive(body, "n", 1)
    if path == COMPLETIONS:
        count = max(count, _positive(body, "best_of", 1)) * _prompts(body.get("prompt"))
    if count > MAX_CHOICES:
        raise BoundInvalid("n", f"at most {MAX_CHOICES} completions may be asked in one request")
    return count


def output_bound(per_choice: int, count: int) -> int:
    return per_choice * count


def _positive(body: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = body.get(name)
    if value is None:
        return default
    if type(value) is not int or value < 1:
        raise BoundInvalid(name, f"{name} must be a positive integer")
    return value


def _prompts(prompt: Any) -> int:
    """A list of strings or a list of token-id lists is a batch: one completion per prompt."""
    if isinstance(prompt, list) and prompt and all(isinstance(p, str | list) for p in prompt):
        return len(prompt)
    return 1
