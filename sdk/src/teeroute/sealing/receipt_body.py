"""The v2 usage receipt's body: what the enclave says it served, as canonical JSON.

One byte form only: a body is accepted only if it is the canonical JSON (sorted keys, no
spaces) of its own fields, so a MAC tag, a Merkle leaf and a third party's reading can never
disagree about what a receipt says (a duplicate key, say, would read differently elsewhere).
Every field is typed and bounded; a bad one raises ReceiptInvalid("receipt.format") whose
detail names the field. Used by receipt_mac.py (tags, frames) and roots.py (Merkle roots).

    receipt_body(fields) -> bytes    build (enclave): checks, then canonical JSON
    parse_body(body) -> ReceiptV2    read (gateway, client, third party): bounded, checked

Two fields are optional: `ttft_us` and `tpot_us`, the agent's own timing of a stream inside
the TEE (request received -> first content-bearing delta; per output token after it). A
reader before them refuses any field it does not know, so the agent writes them only when
every session the receipt is tagged for announced it reads them: the authenticated meta of
its REQUEST sets TIMINGS_META to true (an older agent ignores the key; docs/sealed-mode.md).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from teeroute.sealing import merkle
from teeroute.sealing.errors import ReceiptInvalid

VERSION = 2
MAX_BODY = 8 * 1024
MAX_TEXT = 256
MAX_TOKENS = 10**9
MAX_INDEX = (1 << 53) - 1  # exact in every JSON reader
USAGE_SOURCES = ("engine", "counted")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SESSION = re.compile(r"[0-9a-f]{32}")
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
MAX_MICROS = 86_400 * 10**6  # a day: no answer's timing is longer
TIMINGS_META = "receipt_timings"
"""The meta key (true) by which a REQUEST's sender says it reads `ttft_us` / `tpot_us`."""


@dataclass(frozen=True, slots=True)
class ReceiptV2:
    """A receipt's fields, and `body`, the exact bytes they were read from (and tagged)."""

    session_id: str  # hex of the gateway session's 16-byte id
    index: int  # the receipt's position in that session, from 0 (the enclave's count)
    request_id: str
    model: str
    served_model: str
    input_tokens: int
    output_tokens: int
    usage_source: str
    status: int
    complete: bool
    request_sha256: str
    response_sha256: str
    hpke_key_sha256: str
    signing_key_sha256: str
    issued_at: str
    body: bytes
    ttft_us: int | None = None
    """The agent's TTFT of a stream, if it reported one (optional field)."""
    tpot_us: int | None = None
    """The agent's time per output token after the first, if it reported one."""

    @property
    def leaf(self) -> bytes:
        """The receipt's Merkle leaf hash: SHA-256(0x00 || body)."""
        return merkle.leaf_hash(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def canonical(value: Any) -> bytes:
    """The one byte form of JSON that is tagged or signed (as envelope.canonical, which v2
    does not depend on: envelope.py goes with wire v1)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _count(limit: int) -> Callable[[Any], bool]:
    return lambda value: type(value) is int and 0 <= value <= limit


def _matches(pattern: re.Pattern[str]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and pattern.fullmatch(value) is not None


# Each field and what it must be (the detail of the ReceiptInvalid naming it).
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "session_id": (_matches(_SESSION), "32 lowercase hex digits"),
    "index": (_count(MAX_INDEX), "an integer from 0"),
    "request_id": (_text, f"a string of at most {MAX_TEXT} characters"),
    "model": (_text, f"a string of at most {MAX_TEXT} characters"),
    "served_model": (_text, f"a string of at most {MAX_TEXT} characters"),
    "input_tokens": (_count(MAX_TOKENS), "a token count"),
    "output_tokens": (_count(MAX_TOKENS), "a token count"),
    "usage_source": (lambda v: v in USAGE_SOURCES, "one of " + ", ".join(USAGE_SOURCES)),
    "status": (_count(999), "an HTTP status"),
    "complete": (lambda v: type(v) is bool, "true or false"),
    "request_sha256": (_matches(_SHA256), "64 lowercase hex digits"),
    "response_sha256": (_matches(_SHA256), "64 lowercase hex digits"),
    "hpke_key_sha256": (_matches(_SHA256), "64 lowercase hex digits"),
    "signing_key_sha256": (_matches(_SHA256), "64 lowercase hex digits"),
    "issued_at": (_matches(_ISO_UTC), "a UTC time as YYYY-MM-DDTHH:MM:SSZ"),
}


# Fields a receipt may leave out (a stream's timings, written only for readers that asked).
OPTIONAL: dict[str, tuple[Callable[[Any], bool], str]] = {
    "ttft_us": (_count(MAX_MICROS), "microseconds, at most a day"),
    "tpot_us": (_count(MAX_MICROS), "microseconds, at most a day"),
}


def iso_utc(now: float) -> str:
    """`issued_at` / `signed_at` for a unix time: second precision, UTC, with a Z."""
    return dt.datetime.fromtimestamp(int(now), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_fields(doc: Mapping[str, Any]) -> None:
    """ReceiptInvalid("receipt.format") naming the first field that is missing, unknown or
    not what it must be."""
    if doc.get("v") != VERSION or type(doc.get("v")) is not int:
        raise ReceiptInvalid("receipt.format", f"v: not {VERSION} (not a v2 receipt)")
    unknown = sorted(set(doc) - set(FIELDS) - set(OPTIONAL) - {"v"})
    if unknown:
        raise ReceiptInvalid("receipt.format", f"{unknown[0]}: not a receipt field")
    for name, (valid, what) in FIELDS.items():
        if name not in doc:
            raise ReceiptInvalid("receipt.format", f"{name}: missing")
        if not valid(doc[name]):
            raise ReceiptInvalid("receipt.format", f"{name}: not {what}")
    for name, (valid, what) in OPTIONAL.items():
        if name in doc and not valid(doc[name]):
            raise ReceiptInvalid("receipt.format", f"{name}: not {what}")


def receipt_body(fields: Mapping[str, Any]) -> bytes:
    """The canonical body of a receipt with these fields ("v" is added)."""
    doc = {"v": VERSION, **fields}
    check_fields(doc)
    body = canonical(doc)
    if len(body) > MAX_BODY:
        raise ReceiptInvalid("receipt.format", f"body: over {MAX_BODY} bytes")
    return body


def parse_body(body: bytes) -> ReceiptV2:
    """A receipt read from its canonical body (bounded before it is parsed)."""
    if len(body) > MAX_BODY:
        raise ReceiptInvalid("receipt.format", f"body: over {MAX_BODY} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise ReceiptInvalid("receipt.format", "body: not JSON") from None
    if not isinstance(doc, dict):
        raise ReceiptInvalid("receipt.format", "body: not a JSON object")
    check_fields(doc)
    if canonical(doc) != body:
        raise ReceiptInvalid("receipt.format", "body: not canonical JSON")
    doc.pop("v")
    return ReceiptV2(**doc, body=body)
