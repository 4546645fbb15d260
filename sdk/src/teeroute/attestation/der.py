"""Just enough DER to read Intel's SGX extension in PCK certificates (a SEQUENCE of
SEQUENCE { OID, value }, nested for the TCB). Strict: malformed input raises ValueError."""

from __future__ import annotations

from collections.abc import Iterator

SEQUENCE, OID, INTEGER, OCTET_STRING, ENUMERATED = 0x30, 0x06, 0x02, 0x04, 0x0A


def items(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(tag, content) of each TLV in `data`, in order."""
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise ValueError("truncated DER")
        tag, length = data[offset], data[offset + 1]
        offset += 2
        if length & 0x80:
            size = length & 0x7F
            if size == 0 or size > 4 or offset + size > len(data):
                raise ValueError("bad DER length")
            length = int.from_bytes(data[offset : offset + size], "big")
            offset += size
        if offset + length > len(data):
            raise ValueError("DER value overruns its container")
        yield tag, data[offset : offset + length]
        offset += length


def one(data: bytes, tag: int) -> bytes:
    found = list(items(data))
    if len(found) != 1 or found[0][0] != tag:
        raise ValueError(f"expected one DER value of tag {tag:#x}")
    return found[0][1]


def oid_text(content: bytes) -> str:
    if not content:
        raise ValueError("empty OID")
    parts = [content[0] // 40, content[0] % 40]
    value = 0
    for byte in content[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def oid_map(sequence_content: bytes) -> dict[str, tuple[int, bytes]]:
    """A SEQUENCE OF SEQUENCE { OID, value } as {oid: (tag, content)}."""
    found = {}
    for tag, entry in items(sequence_content):
        if tag != SEQUENCE:
            raise ValueError("expected SEQUENCE entries")
        pair = list(items(entry))
        if len(pair) != 2 or pair[0][0] != OID:
            raise ValueError("expected { OID, value }")
        found[oid_text(pair[0][1])] = pair[1]
    return found
