"""POST /v1/sessions on the gateway: a client opens its own session with an enclave.

The client (SDK, `teeroute proxy`) verified the enclave's evidence itself and sends a HELLO
(initiator "client") naming that enclave's HPKE key, with the key id also in the header
`x-teeroute-enclave-key`. The gateway forwards it to an admitted endpoint holding that key,
wrapped in a REQUEST of the gateway's own session (meta inner "client"), so only the
gateway opens sessions at enclaves; the enclave's WELCOME comes back unchanged. The gateway
then remembers the session id -> enclave key (client_sealed.ClientRoutes) to route the
client's REQUEST frames, until the session expires. It reads nothing else: the session's
keys are the client's and the enclave's.

Answers: 200 WELCOME frame (Content-Type application/vnd.teeroute.sealed.v2); the enclave's
own refusal of the HELLO passed on as it came (e.g. 400 `session_invalid`); 429 over
SESSIONS_PER_MINUTE opens for the key; 400
`sealed_envelope_invalid` (not a client HELLO, or the header names another key), 400
`unsupported_wire_version`, 503 `sealed_key_unavailable` (no admitted endpoint holds the key).
"""

from __future__ import annotations

import datetime as dt

from teeroute.sealing import frames
from teeroute.sealing.errors import SealingError
from teeroute.sealing.frames import FrameType
from teeroute.sealing.session import Hello, parse_hello
from teeroute_gateway.asgi import JSON, Receive, Scope, Send, bearer, header, read_body, respond
from teeroute_gateway.catalog import Catalog, Endpoint
from teeroute_gateway.client_sealed import CLIENT, refuse_v1
from teeroute_gateway.errors import BadRequest, Unavailable, UpstreamFailed
from teeroute_gateway.hop_v2 import post_in_session
from teeroute_gateway.limits import Limits
from teeroute_gateway.services import Services
from teeroute_gateway.sessions import EnclaveRefused
from teeroute_gateway.throttle import enforce
from teeroute_gateway.upstream import UpstreamError

ENCLAVE_KEY = b"x-teeroute-enclave-key"
SESSIONS = "/v1/sessions"
MAX_HELLO = 16 * 1024
SESSIONS_PER_MINUTE = 60
"""Sessions one API key may open a minute (a client keeps one per enclave for its lifetime)."""


async def open_client_session(s: Services, scope: Scope, receive: Receive, send: Send) -> None:
    account = await s.keys.account(bearer(scope))
    raw = await read_body(scope, receive, MAX_HELLO)
    # each open costs the enclave a key exchange and a place in its bounded store
    await enforce(s.limiter, f"{account.id}|sessions", Limits(rpm=SESSIONS_PER_MINUTE), "sessions")
    hello = client_hello(raw, (header(scope, b"content-type") or b"").decode("latin-1"))
    key_id = _key_id(hello, header(scope, ENCLAVE_KEY))
    endpoint = holder(s.catalog, key_id, dt.datetime.now(dt.UTC))
    try:
        welcome = await post_in_session(
            s.dispatcher.sessions, s.dispatcher.post_frames, endpoint, SESSIONS, CLIENT, raw
        )
    except EnclaveRefused as exc:
        if exc.refusal.status < 400 or exc.refusal.status >= 500:
            raise _failed(exc) from None
        await respond(send, exc.refusal.status, exc.body, [JSON])
        return
    except UpstreamError as exc:
        raise _failed(exc) from None
    expires = min(hello.params.expires_at, _timestamp(endpoint.expires_at))
    s.dispatcher.client_routes.remember(hello.params.session_id, key_id, expires)
    headers = [(b"content-type", frames.CONTENT_TYPE.encode()), (b"x-teeroute-endpoint",
               endpoint.key.encode())]  # fmt: skip
    await respond(send, 200, welcome, headers)


def _failed(exc: UpstreamError) -> UpstreamFailed:
    return UpstreamFailed(
        f"the enclave could not open the session: {exc}", code=f"upstream_{exc.kind}"
    )


def client_hello(raw: bytes, content_type: str) -> Hello:
    """The client's HELLO frame, read (its transcript names the enclave and the lifetime)."""
    if frames.looks_v1(content_type):
        raise refuse_v1()
    if not frames.looks_v2(content_type):
        raise BadRequest(
            f"a session is opened with a HELLO frame (Content-Type {frames.CONTENT_TYPE})",
            code="sealed_envelope_invalid",
        )
    try:
        frame = frames.decode_one(raw)
        if frame.type != FrameType.HELLO:
            raise SealingError("frame.type", f"expected a HELLO frame, got {frame.type.name}")
        hello = parse_hello(frame.payload)
    except SealingError as exc:
        if exc.check == "frame.version":
            raise refuse_v1() from None
        raise BadRequest(
            f"the hello is malformed: {exc}", code="sealed_envelope_invalid", param=exc.check
        ) from None
    if hello.params.initiator != CLIENT:
        raise BadRequest(
            'a client\'s hello names the initiator "client"',
            code="sealed_envelope_invalid",
            param="session.initiator",
        )
    return hello


def _key_id(hello: Hello, given: bytes | None) -> str:
    named = hello.params.enclave_hpke_sha256
    if given is not None and given.decode("latin-1").strip().lower() != named:
        raise BadRequest(
            "x-teeroute-enclave-key names another enclave key than the hello",
            code="sealed_envelope_invalid",
            param=ENCLAVE_KEY.decode(),
        )
    return named


def holder(catalog: Catalog, key_id: str, now: dt.datetime) -> Endpoint:
    """An admitted endpoint holding the enclave key `key_id` (503 if none)."""
    for pool in catalog.pools.values():
        for endpoint in pool.endpoints:
            if (
                endpoint.hpke_key_sha256 == key_id
                and endpoint.hpke_public is not None
                and endpoint.admitted(now)
            ):
                return endpoint
    raise Unavailable(
        "no admitted enclave holds this key; fetch fresh attestations and open a session "
        "with one of them",
        code="sealed_key_unavailable",
    )


def _timestamp(when: dt.datetime | None) -> float:
    return when.timestamp() if when is not None else 0.0
