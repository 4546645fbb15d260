"""Opening wire-v2 sessions: POST /v1/sessions (docs/sealed-mode.md, wire v2).

    open_session(sealing, raw, now)   -> the WELCOME frame; the session is kept in its store
    flush_roots(sealing, raw, now)    -> POST /v1/sessions/roots: ROOT frames (maybe none)

Two kinds of HELLO reach the agent, both from the gateway:

- the gateway's own (body: a HELLO frame): its initiator is `gateway:<sha256 hex of an Ed25519
  key>`, and that key must be one the agent pins (TEEROUTE_AGENT_GATEWAY_KEYS, the keys its
  evidence binds) and must have signed the HELLO. Unsigned: 401 `gateway_auth_missing`; signed
  by another key or not a pinned one: 401 `gateway_auth_invalid`; no key pinned: 403
  `gateway_auth_disabled` (unless TEEROUTE_AGENT_ALLOW_ANY_CALLER, development only, which
  takes any gateway HELLO);
- a client's (body: a REQUEST frame of an open gateway session, meta `{"path": "/v1/sessions",
  "inner": "client"}`, its body the client's HELLO frame): the gateway forwards it, so only
  the gateway opens sessions here. A client HELLO sent on its own is refused, 403
  `session_refused`.

Then `session.accept` checks the HELLO is for this enclave's keys and its lifetime is sane
(`session.*` checks), and the HELLO is taken once (`sealed.remember_hello`): a HELLO sent
again would open a session with the same keys, under which the requests of the first one
could be replayed. A HELLO naming a session id that is open already is refused, 409
`session_exists`.
"""

from __future__ import annotations

import hashlib
import json

from teeroute.sealing.batcher import RootBatcher
from teeroute.sealing.errors import SealingError
from teeroute.sealing.frames import FrameType, decode_one
from teeroute.sealing.session import Hello, Session, parse_hello
from teeroute_enclave.gateway_auth import Callers
from teeroute_enclave.refusals import SealedRejected, rejected
from teeroute_enclave.sealed import (
    ROOTS_PATH,
    SESSIONS_PATH,
    Sealing,
    frame_of,
    open_gateway_request,
    remember_hello,
)
from teeroute_enclave.sessions import Entry, SessionExists

CLIENT = "client"


def open_session(sealing: Sealing, raw: bytes, now: float) -> bytes:
    """A HELLO (the gateway's) or a gateway REQUEST wrapping a client's; -> WELCOME frame."""
    try:
        kind = decode_one(raw).type
    except SealingError as exc:
        raise rejected(exc) from None
    if kind is FrameType.HELLO:
        return _gateway_session(sealing, frame_of(raw, FrameType.HELLO), now)
    if kind is FrameType.REQUEST:
        outer = open_gateway_request(sealing, raw, SESSIONS_PATH, now)
        if outer.meta["inner"] != "client":
            raise _refused('meta.inner: a session opened through the gateway is "client"')
        return _client_session(sealing, frame_of(outer.body, FrameType.HELLO), now)
    raise SealedRejected(
        400, "sealed_frame_invalid", f"frame.type: expected HELLO or REQUEST, got {kind.name}"
    )


def flush_roots(sealing: Sealing, raw: bytes, now: float) -> bytes:
    """The gateway session's recent ROOT frames and one over its pending receipts (if any);
    the sealed body may name the lowest receipt index the gateway waits for,
    `{"from_index": n}` (empty: all it holds)."""
    opened = open_gateway_request(sealing, raw, ROOTS_PATH, now)
    return opened.entry.roots_due(now, _from_index(opened.body))


def _from_index(body: bytes) -> int:
    if not body:
        return 0
    try:
        doc = json.loads(body) if len(body) <= 256 else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        doc = None
    value = doc.get("from_index") if isinstance(doc, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise SealedRejected(400, "invalid_request", 'body: expected {"from_index": n >= 0}')
    return value


def _gateway_session(sealing: Sealing, payload: bytes, now: float) -> bytes:
    hello = _parse(payload)
    check_gateway(hello, sealing.callers)
    welcome, session = _accept(sealing, hello, now)
    roots = RootBatcher(
        session_id=session.id,
        sign=sealing.keys.sign,
        signing_public=sealing.keys.signing_public,
        hpke_key_sha256=sealing.keys.hpke_key_id,
        batch_size=sealing.root_receipts,
        interval_s=sealing.root_interval_s,
    )
    _keep(sealing, Entry(session, roots), gateway=True, now=now)
    return welcome


def _client_session(sealing: Sealing, payload: bytes, now: float) -> bytes:
    hello = _parse(payload)
    if hello.params.initiator != CLIENT:
        raise _refused('session.initiator: a session opened for a client names "client"')
    welcome, session = _accept(sealing, hello, now)
    _keep(sealing, Entry(session), gateway=False, now=now)
    return welcome


def check_gateway(hello: Hello, callers: Callers) -> None:
    """Passes when a gateway key the agent pins signed this gateway HELLO."""
    named = hello.initiator_key_sha256
    if named is None:
        raise _refused("session.initiator: a client opens its session through the gateway")
    if callers.allow_any:
        return
    if not callers.pinned:
        message = "this agent pins no gateway key (TEEROUTE_AGENT_GATEWAY_KEYS): no sessions"
        raise SealedRejected(403, "gateway_auth_disabled", message)
    if hello.signature is None:
        raise _unauthorized("gateway_auth_missing", "the gateway's HELLO is not signed")
    key = pinned_key(callers.pinned, named)
    if key is None:
        raise _unauthorized("gateway_auth_invalid", "the HELLO names no gateway key pinned here")
    try:
        hello.check_signature(key)
    except SealingError as exc:
        raise _unauthorized("gateway_auth_invalid", exc.detail) from None


def pinned_key(pinned: tuple[bytes, ...], sha256_hex: str) -> bytes | None:
    return next((key for key in pinned if hashlib.sha256(key).hexdigest() == sha256_hex), None)


def _parse(payload: bytes) -> Hello:
    try:
        return parse_hello(payload)
    except SealingError as exc:
        raise rejected(exc) from None


def _accept(sealing: Sealing, hello: Hello, now: float) -> tuple[bytes, Session]:
    try:
        welcome, session = sealing.keys.accept(hello, now)
    except SealingError as exc:
        raise rejected(exc) from None
    remember_hello(sealing.guard, hello.enc, hello.params.created_at, now)
    return welcome, session


def _keep(sealing: Sealing, entry: Entry, *, gateway: bool, now: float) -> None:
    store = sealing.gateways if gateway else sealing.clients
    try:
        store.add(entry, now)
    except SessionExists as exc:
        entry.session.close()
        raise SealedRejected(409, "session_exists", str(exc)) from None


def _refused(message: str) -> SealedRejected:
    return SealedRejected(403, "session_refused", message)


def _unauthorized(kind: str, detail: str) -> SealedRejected:
    return SealedRejected(401, kind, f"hello.signature: {detail}")
