"""Client-sealed bodies at the gateway (wire v2): what the gateway may read of them to route.

A client seals to an enclave in one of two ways, and the gateway reads only clear,
authenticated parts:

    REQUEST   a request in the client's own session with the enclave, opened earlier through
              the gateway (POST /v1/sessions, client_sessions.py): routed to the enclave that
              holds the session (`ClientRoutes`, learned when the session was opened)
    ONESHOT   a request with its own HELLO: routed to the enclave key its HELLO names

Either way its meta (clear, authenticated by the enclave) gives path, model, stream and the
output bound (`meta.max_tokens`, required). A v1 body is refused as `unsupported_wire_version`.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from teeroute.sealing import frames
from teeroute.sealing.errors import SealingError
from teeroute.sealing.frames import FrameType
from teeroute.sealing.messages import REQUEST_HEAD
from teeroute.sealing.session import parse_hello
from teeroute_gateway.errors import BadRequest, SessionUnknown, UnsupportedWireVersion

MAX_ROUTES = 65536
"""Client sessions remembered (oldest forgotten first: their clients re-open)."""
CLIENT = "client"


@dataclass(frozen=True, slots=True)
class ClientSealed:
    """A client's sealed request, unopened."""

    inner: str
    """"client" (a REQUEST of a client session) or "oneshot"."""
    key_id: str
    """The enclave HPKE key it is sealed to (routing)."""
    raw: bytes
    """The frame, forwarded as it came."""
    meta: dict[str, Any]
    request_sha256: str
    """SHA-256 of the REQUEST payload: the enclave's receipt names the request by it."""
    ciphertext_bytes: int


class ClientRoutes:
    """Client session id -> the enclave key it was opened with, until it expires; bounded
    (least recently used forgotten first)."""

    def __init__(self, limit: int = MAX_ROUTES) -> None:
        self._limit = limit
        self._routes: collections.OrderedDict[bytes, tuple[str, float]] = collections.OrderedDict()

    def remember(self, session_id: bytes, key_id: str, expires_at: float) -> None:
        self._routes[session_id] = (key_id, expires_at)
        self._routes.move_to_end(session_id)
        while len(self._routes) > self._limit:
            self._routes.popitem(last=False)

    def key_id(self, session_id: bytes, now: float) -> str | None:
        found = self._routes.get(session_id)
        if found is None:
            return None
        if found[1] <= now:
            del self._routes[session_id]
            return None
        self._routes.move_to_end(session_id)
        return found[0]


def refuse_v1() -> UnsupportedWireVersion:
    return UnsupportedWireVersion(
        "this gateway speaks sealed wire v2 only (Content-Type "
        f"{frames.CONTENT_TYPE}); a v1 sealed body cannot be served: update the client",
        code="unsupported_wire_version",
    )


def parse_client_frame(raw: bytes, routes: ClientRoutes, now: float) -> ClientSealed:
    """A client's REQUEST or ONESHOT frame, read as far as routing needs."""
    frame = _frame(raw)
    if frame.type == FrameType.REQUEST:
        session_id = frame.payload[:16]
        key_id = routes.key_id(session_id, now)
        if key_id is None:
            raise SessionUnknown(
                "session.id: this gateway knows no open client session with this id "
                "(expired or never opened here): open a new one (POST /v1/sessions)",
                code="session_unknown",
            )
        meta, size = _request_meta(frame.payload)
        digest = hashlib.sha256(frame.payload).hexdigest()
        return ClientSealed(CLIENT, key_id, raw, meta, digest, size)
    if frame.type == FrameType.ONESHOT:
        key_id, request = _oneshot(frame.payload)
        meta, size = _request_meta(request)
        digest = hashlib.sha256(request).hexdigest()
        return ClientSealed("oneshot", key_id, raw, meta, digest, size)
    raise _invalid("frame.type", f"expected a REQUEST or ONESHOT frame, got {frame.type.name}")


def _frame(raw: bytes) -> frames.Frame:
    try:
        return frames.decode_one(raw)
    except SealingError as exc:
        if exc.check == "frame.version":
            raise refuse_v1() from None
        raise _invalid(exc.check, exc.detail) from None


def _request_meta(payload: bytes) -> tuple[dict[str, Any], int]:
    """The clear meta of a REQUEST payload, and its ciphertext's size."""
    if len(payload) < REQUEST_HEAD.size:
        raise _invalid("frame.truncated", "a request shorter than its header")
    meta_len = REQUEST_HEAD.unpack_from(payload)[4]
    end = REQUEST_HEAD.size + meta_len
    if len(payload) < end:
        raise _invalid("frame.truncated", "a request cut inside its meta")
    try:
        meta = orjson.loads(payload[REQUEST_HEAD.size : end])
    except orjson.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict):
        raise _invalid("meta", "expected a JSON object")
    return meta, len(payload) - end


def _oneshot(payload: bytes) -> tuple[str, bytes]:
    """(the enclave key its HELLO names, the REQUEST payload after it)."""
    if len(payload) < 2:
        raise _invalid("frame.truncated", "a oneshot shorter than its hello length")
    end = 2 + int.from_bytes(payload[:2], "big")
    if len(payload) < end:
        raise _invalid("frame.truncated", "a oneshot cut inside its hello")
    try:
        hello = parse_hello(payload[2:end])
    except SealingError as exc:
        raise _invalid(exc.check, exc.detail) from None
    if hello.params.initiator != CLIENT:
        raise _invalid("session.initiator", 'a client\'s hello names "client"')
    return hello.params.enclave_hpke_sha256, payload[end:]


def _invalid(check: str, detail: str) -> BadRequest:
    return BadRequest(
        f"the sealed request is malformed: {check}: {detail}",
        code="sealed_envelope_invalid",
        param=check,
    )
