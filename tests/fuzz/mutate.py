"""Inputs for fuzzing: random bytes, and structure-aware mutations of a valid input.

A mutation is a few edits of the valid bytes, the kinds that break a parser: a flipped or
overwritten byte, a length field set to an edge value (0, 1, max, the real length +- 1), a
cut, an extension, an inserted or deleted run, a repeated slice. Hypothesis shrinks a failing
mutation to its fewest, smallest edits.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

from hypothesis import strategies as st

T = TypeVar("T")
EDGE_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, ord("{"), ord("["), ord('"'), ord("\n"))
EDGE_INTS = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)
_FIELDS = (">H", "<H", ">I", "<I", ">Q", "<Q")


def _flip(draw: st.DrawFn, data: bytearray) -> None:
    at = draw(st.integers(0, len(data) - 1))
    data[at] ^= draw(st.integers(1, 255))


def _set_byte(draw: st.DrawFn, data: bytearray) -> None:
    data[draw(st.integers(0, len(data) - 1))] = draw(st.sampled_from(EDGE_BYTES))


def _set_field(draw: st.DrawFn, data: bytearray) -> None:
    """An integer field (either endianness, 2 to 8 bytes) set to an edge value."""
    layout = draw(st.sampled_from(_FIELDS))
    size = struct.calcsize(layout)
    if len(data) < size:
        return
    at = draw(st.integers(0, len(data) - size))
    old = struct.unpack_from(layout, data, at)[0]
    value = draw(st.sampled_from((*EDGE_INTS, old + 1, old - 1, len(data), len(data) + 1)))
    struct.pack_into(layout, data, at, value % (1 << (8 * size)))


def _truncate(draw: st.DrawFn, data: bytearray) -> None:
    del data[draw(st.integers(0, len(data) - 1)) :]


def _extend(draw: st.DrawFn, data: bytearray) -> None:
    data += draw(st.binary(min_size=1, max_size=64))


def _insert(draw: st.DrawFn, data: bytearray) -> None:
    at = draw(st.integers(0, len(data)))
    data[at:at] = draw(st.binary(min_size=1, max_size=32))


def _delete(draw: st.DrawFn, data: bytearray) -> None:
    at = draw(st.integers(0, len(data) - 1))
    del data[at : at + draw(st.integers(1, 32))]


def _repeat(draw: st.DrawFn, data: bytearray) -> None:
    at = draw(st.integers(0, len(data) - 1))
    piece = data[at : at + draw(st.integers(1, 64))]
    data[at:at] = piece


EDITS: tuple[Callable[[st.DrawFn, bytearray], None], ...] = (
    _flip, _set_byte, _set_field, _truncate, _extend, _insert, _delete, _repeat,
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, valid: bytes, max_edits: int = 3) -> bytes:
    """`valid` after 1 to `max_edits` edits (it may come out equal: callers allow that)."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, max_edits))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        draw(st.sampled_from(EDITS))(draw, data)
    return bytes(data)


def inputs(valid: bytes, max_random: int = 256) -> st.SearchStrategy[bytes]:
    """Mostly mutations of `valid`, sometimes bytes from nowhere."""
    return st.one_of(mutated(valid), st.binary(max_size=max_random))


def typed(call: Callable[[], T], *allowed: type[BaseException]) -> T | BaseException:
    """`call()`'s result, or the exception it raised if it is one of `allowed`; any other
    exception (IndexError, struct.error, KeyError, RecursionError, ...) propagates and
    fails the property."""
    try:
        return call()
    except allowed as exc:
        return exc
