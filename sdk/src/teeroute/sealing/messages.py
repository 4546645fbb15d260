"""The byte layout of wire v2 session messages (REQUEST, CHUNK), shared by session.py and by
relays that count chunks without opening them (the gateway on a client-sealed hop).

    session_id(16) | epoch u32 | counter u64 | flags u8 | [REQUEST: u16 meta len | meta] | AEAD

flags bit 0: the final chunk of an answer. Everything here is precompiled `struct` layouts,
so the per-chunk path packs each header once.
"""

from __future__ import annotations

import hashlib
import struct

from teeroute.sealing.errors import FrameInvalid, OpenFailed
from teeroute.sealing.frames import MAX_PAYLOAD

MESSAGE = struct.Struct(">16sIQB")
"""A message's clear prefix: session id, epoch, counter, flags (29 bytes)."""
REQUEST_HEAD = struct.Struct(">16sIQBH")
"""A request's clear prefix: the message prefix and the meta length (31 bytes)."""
CHUNK_AAD = struct.Struct(">B16sIQBQI")
"""A chunk's AAD: frame type, its prefix, its request's counter and its index."""
FRAME_CHUNK = struct.Struct(">2sBBI16sIQB")
"""A CHUNK frame's header and message prefix, packed at once."""
LENGTH = struct.Struct(">I")
TAG = 16
CHUNK_OVERHEAD = MESSAGE.size + TAG
MAX_BODY = MAX_PAYLOAD - REQUEST_HEAD.size - TAG
FINAL = 0x01
_NONCE_BYTES = 12


def nonce(base: int, counter: int) -> bytes:
    return (base ^ counter).to_bytes(_NONCE_BYTES, "big")


class ChunkObserver:
    """Counts and hashes an answer's CHUNK payloads without opening them.

    response_sha256 = sha256 over the chunks of (payload length u32 | payload), the same
    value the enclave's Reply and the initiator's Exchange compute. `finished` comes from the
    final flag, which only the ends can authenticate: a relay learns it, it cannot trust it.
    """

    __slots__ = ("_hash", "chunks", "finished")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.chunks = 0
        self.finished = False

    @property
    def response_sha256(self) -> str:
        return self._hash.hexdigest()

    def observe(self, payload: bytes) -> None:
        if len(payload) < CHUNK_OVERHEAD:
            raise FrameInvalid("frame.truncated", "a chunk shorter than its header and tag")
        if self.finished:  # the ends refuse it too (Exchange.open)
            raise OpenFailed("chunk.final", "a chunk after the final one")
        self._hash.update(LENGTH.pack(len(payload)))
        self._hash.update(payload)
        self.chunks += 1
        self.finished = bool(payload[MESSAGE.size - 1] & FINAL)
