"""The simulator's tokenizer: a token is a run of word characters or one other non-space
character ("Hello, world!" is 4 tokens).

Not any real model's tokenizer, but cheap, deterministic and the same for prompts and for the
simulator's own output, so every text it generates counts back to its completion_tokens.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]")


def split_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))
