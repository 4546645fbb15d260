"""Deterministic generation: what the simulated model answers.

The answer to a request is a pure function of the request's digest (server seed, model,
request seed and prompt, see `request_digest`), its token limit and its stop sequences: the
same request always gets the same text, token count and finish reason, on any machine.

Each request has a natural length of 16 to 255 tokens taken from its digest; the answer ends
there with finish_reason "stop" (its last token is "."), or earlier with "length" when the
token limit is smaller. A shorter limit yields a prefix of the longer answer. The words come
from a fixed vocabulary, chosen by a BLAKE2b stream keyed by the digest; every generated piece
is exactly one token for `tokens.count_tokens`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

NATURAL_MIN = 16
NATURAL_SPAN = 240  # natural lengths are NATURAL_MIN .. NATURAL_MIN + NATURAL_SPAN - 1

FinishReason = Literal["stop", "length"]

_VOCABULARY = """
    the a an of to in on for with by from at as and or but not is are was be been this that
    these those it its they their we our you your model models token tokens prompt answer
    request response route router gateway miner miners pool pools enclave enclaves agent
    engine attestation evidence report nonce key keys quote chip node nodes cluster pod pods
    service endpoint endpoints price prices latency throughput budget usage meter receipt
    secure sealed confidential trusted verified fresh valid signed measured private public
    fast slow steady quiet simple small large first last next every each some many few more
    less both other same new old early late short long open closed ready healthy stable
    compute memory cache batch queue stream chunk byte bytes data text word words line lines
    page book story river mountain forest ocean garden city village bridge road window door
    light shadow morning evening night day season winter summer spring autumn rain snow wind
    cloud star moon sun stone water fire earth paper glass metal wood silver golden green
    blue red white black bright dark warm cold gentle careful curious patient honest clever
    runs serves routes checks seals signs counts waits sends reads writes keeps holds finds
    builds moves turns starts stops opens closes grows falls rises shows tells asks gives
    takes makes brings carries follows leads learns knows thinks sees hears feels says
    then now here there always never often soon again together apart within across between
"""
_WORDS = tuple(_VOCABULARY.split())
_PUNCTUATION = (",", ",", ",", ".", ";", ":")
_PUNCTUATION_BELOW = 40  # of 256: how often a word is followed by punctuation
_BLOCK = 64  # bytes per BLAKE2b block of the token stream


@dataclass(frozen=True, slots=True)
class Completion:
    """One generated answer. `pieces` holds the text of every generated token in order, so
    len(pieces) is completion_tokens; a stop sequence may leave the last ones empty or cut."""

    pieces: tuple[str, ...]
    finish_reason: FinishReason

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces)


def request_digest(*, seed: int, model: str, request_seed: int | None, prompt: str) -> bytes:
    """What an answer is a function of, in 32 bytes. `prompt` is the canonical prompt."""
    material = f"{seed}\x00{model}\x00{request_seed}\x00{prompt}".encode()
    return hashlib.blake2b(material, digest_size=32, person=b"engine-sim").digest()


def natural_length(digest: bytes) -> int:
    return NATURAL_MIN + int.from_bytes(digest[:2], "big") % NATURAL_SPAN


def generate(digest: bytes, max_tokens: int | None, stop: Sequence[str] = ()) -> Completion:
    natural = natural_length(digest)
    limit = natural if max_tokens is None else min(natural, max_tokens)
    pieces = _pieces(digest, limit)
    if limit == natural:
        pieces[-1] = "."
    kept = _cut_at_stop(pieces, stop)
    if kept is not None:
        return Completion(tuple(kept), "stop")
    return Completion(tuple(pieces), "stop" if limit == natural else "length")


def _stream(digest: bytes, length: int) -> bytes:
    """`length` bytes of a BLAKE2b stream keyed by the digest, one byte per token."""
    blocks = range((length + _BLOCK - 1) // _BLOCK)
    stream = b"".join(
        hashlib.blake2b(digest + block.to_bytes(4, "big"), digest_size=_BLOCK).digest()
        for block in blocks
    )
    return stream[:length]


def _pieces(digest: bytes, limit: int) -> list[str]:
    pieces: list[str] = []
    after_word = False
    for value in _stream(digest, limit):
        if after_word and value < _PUNCTUATION_BELOW:
            pieces.append(_PUNCTUATION[value % len(_PUNCTUATION)])
            after_word = False
        else:
            word = _WORDS[value % len(_WORDS)]
            pieces.append(f" {word}" if pieces else word)
            after_word = True
    return pieces


def _cut_at_stop(pieces: list[str], stop: Sequence[str]) -> list[str] | None:
    """The pieces generated up to and including the end of the earliest stop sequence, their
    text cut where it begins (as engines do: the stop sequence is not returned); None if no
    stop sequence occurs."""
    text = "".join(pieces)
    hits = [(found, len(s)) for s in stop if s and (found := text.find(s)) >= 0]
    if not hits:
        return None
    start, length = min(hits)
    end = start + length
    kept: list[str] = []
    offset = 0
    for piece in pieces:
        if offset >= end:
            break
        kept.append(piece[: max(0, start - offset)])
        offset += len(piece)
    return kept
