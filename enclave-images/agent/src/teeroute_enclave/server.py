"""The agent's HTTP API, the pod's front door (the engine listens on loopback only).

    GET  /healthz              200 when the agent can serve (and its engine answers), else 503
    POST /v1/attestation       {"nonce": base64 of 32 bytes} -> the evidence document
    POST /v1/chat/completions  forwarded to the engine (`proxy`), relayed as it arrives; with
                               Content-Type application/vnd.teeroute.sealed.v2, a REQUEST
                               frame of a gateway session (`sealed`): opened here, forwarded,
                               answered in CHUNK frames, a MAC-tagged receipt and, when due,
                               a signed Merkle root (`answer`, docs/sealed-mode.md)
    POST /v1/completions       likewise
    POST /v1/sessions          a wire v2 HELLO (the gateway's, signed by a gateway key the agent
                               pins; or a client's, wrapped in a gateway REQUEST) -> WELCOME
                               (`handshake`, `sessions`)
    POST /v1/sessions/roots    a gateway REQUEST -> the ROOT frames still due
    GET  /v1/models            forwarded
    POST /v1/secrets           a sealed secret release from the operator, signed by the release
                               key the agent pins for the pool it serves -> 204 (`secrets_store`)

Everything forwarded to the engine is answered only to the gateway: a plain completion or the
model list with a `teeroute-gateway-auth` header signed by a gateway key the agent pins, for
this request to this enclave (`gateway_auth`); a sealed one in a gateway session, whose HELLO
such a key signed. Evidence, /healthz and secret releases are not: evidence is public, a
release is signed by the operator's release key.

Every request forwarded to the engine carries `Authorization: Bearer <engine-api-key>` once
that secret was released, and never the caller's Authorization.

The agent's own errors are JSON `{"error": {"message", "type"}}`: 400 (bad request; sealed:
`unsupported_wire_version` (a v1 sealed body), `sealed_frame_invalid`, `session_invalid`,
`sealed_envelope_invalid`, `sealed_open_failed`, `sealed_request_stale`, `secrets_invalid`),
409 `session_unknown` (no such open session: open a new one), `session_exists`,
401 `gateway_auth_missing`, `gateway_auth_invalid`, `gateway_auth_stale` or
`gateway_auth_replayed` and 403 `gateway_auth_disabled` (no gateway key pinned) for a request
to the engine that the gateway did not authorize (`gateway_auth`), 403 `sealing_required` (a
plain completion when TEEROUTE_AGENT_REQUIRE_SEALED is set), 403
`secret_release_disabled` (no TEEROUTE_AGENT_RELEASE_KEY or TEEROUTE_AGENT_POOL) or
`release_refused` (not signed by that key, or for another pool: check `pool.binding`), 404,
409 `release_stale` (a release not newer than the one applied) or `sealed_request_replayed`
(`replay`), 411 (chunked request body), 413 (body over 4 KiB for attestation, 64 KiB for
secrets, 8 MiB for the engine), 421 `sealed_key_mismatch` (sealed to
another enclave's key), 500 `secrets_unwritable`, 502, 503 or 504 (the engine broke off, is
unavailable, timed out; 503 also: evidence unavailable, `replay_cache_full`). The engine's own
answers, errors included, pass through unchanged (sealed, when the request was). Bodies and
secrets are never logged.

It speaks HTTP/1.1 with keep-alive, so the gateway's connection pool reuses connections, and
relays a body of unknown length (an SSE stream) with chunked transfer encoding: each piece is
written as it is read, and a stream cut short (engine failure) ends without the last chunk, so
httpx and the openai SDK report an incomplete answer instead of taking it for a whole one, which
a body delimited by closing the connection could not tell them. A sealed stream the engine cuts
short instead ends cleanly, with a sealed error event, the final frame and a receipt saying
`complete: false`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Generator, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from teeroute.attestation.providers import Provider, ProviderError
from teeroute.sealing import frames, gateway_auth
from teeroute_enclave import answer, handshake, proxy, sealed
from teeroute_enclave.documents import evidence_document
from teeroute_enclave.gateway_auth import Callers
from teeroute_enclave.keys import EnclaveKeys
from teeroute_enclave.replay import ReplayGuard
from teeroute_enclave.secrets_store import MAX_RELEASE, SecretRejected, SecretStore, StaleRelease
from teeroute_enclave.sessions import SessionStore

MAX_BODY = 4096  # of an attestation request
MAX_SESSION_BODY = 64 * 1024  # a HELLO (a client's wrapped in a gateway REQUEST), a roots call
DRAIN_LIMIT = 2 * proxy.MAX_BODY
"""A refused body up to this size is read (and dropped) after the answer, so a client that
sends it all before reading gets the answer rather than a reset connection."""
DRAIN_TIMEOUT_S = 5.0
WRITE_BUFFER = 64 * 1024
IDLE_TIMEOUT_S = 75.0  # an idle keep-alive connection (or a stalled client) is closed after it


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    """The listen backlog. socketserver's default of 5 overflowed when the gateway reconnected
    in a burst, and each dropped connection attempt cost the client a SYN retry of 1 s or more."""

    def __init__(
        self,
        address: tuple[str, int],
        provider: Provider,
        keys: EnclaveKeys,
        engine_url: str = "",
        engine_timeout_s: float = proxy.READ_TIMEOUT_S,
        *,
        require_sealed: bool = False,
        secrets: SecretStore | None = None,
        engine_health: bool = True,
        replay: ReplayGuard | None = None,
        callers: Callers | None = None,
        root_receipts: int = sealed.DEFAULT_ROOT_RECEIPTS,
        root_interval_s: float = sealed.DEFAULT_ROOT_INTERVAL_S,
    ) -> None:
        super().__init__(address, _Handler)
        self.provider = provider
        self.keys = keys
        self.engine_url = engine_url.rstrip("/")
        self.engine_timeout_s = engine_timeout_s
        self.require_sealed = require_sealed
        self.secrets = secrets or SecretStore()
        self.engine_health = engine_health
        self.replay = ReplayGuard() if replay is None else replay  # an empty guard is falsy
        self.callers = Callers() if callers is None else callers
        """Whom inference is answered: by default no one (no gateway key pinned)."""
        self.sealing = sealed.Sealing(
            keys, self.replay, self.callers, SessionStore(), SessionStore(),
            root_receipts, root_interval_s,
        )  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each SSE event leaves when written, not with the next
    wbufsize = WRITE_BUFFER
    """Writes are buffered, so an answer of known length leaves with its headers in one
    send; a streamed answer is flushed piece by piece (`_relay`)."""
    timeout = IDLE_TIMEOUT_S
    _body_read = False

    def setup(self) -> None:
        super().setup()
        # the idle timeout in the kernel: a streamed answer's writes poll nothing first
        if self.timeout is not None:
            proxy.kernel_timeouts(self.connection, self.timeout)

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        self._body_read = False
        path = self.path.split("?")[0]
        if (self.command, path) == ("GET", "/healthz"):
            self._health()
        elif (self.command, path) == ("POST", "/v1/attestation"):
            self._attest()
        elif (self.command, path) == ("POST", "/v1/secrets"):
            self._release_secrets()
        elif self.command == "POST" and path in (sealed.SESSIONS_PATH, sealed.ROOTS_PATH):
            self._session(path)
        elif self.command == "POST" and path in sealed.SEALED_PATHS:
            self._inference(path)
        elif proxy.forwarded(self.command, path):
            body = self._authorized()
            if body is not None:
                self._forward(path, body)
        else:
            self._error(404, "not_found", f"no route {self.command} {path}")

    def _health(self) -> None:
        if self._engine_ready():
            status = {"status": "ok", "tee": self.server.provider.tee}
            self._send(200, {**status, "keys": self.server.keys.fingerprint()})
        else:
            self._error(503, "engine_unavailable", "the engine does not answer yet")

    def _attest(self) -> None:
        try:
            nonce = _nonce(self._body(MAX_BODY))
            document = evidence_document(
                self.server.provider, self.server.keys, nonce, dt.datetime.now(dt.UTC)
            )
        except proxy.RequestError as exc:
            self._error(exc.status, exc.kind, str(exc))
        except ValueError as exc:
            self._error(400, "invalid_request", str(exc))
        except ProviderError as exc:
            self._error(503, "evidence_unavailable", str(exc))
        else:
            self._send(200, document)

    def _inference(self, path: str) -> None:
        content_type = self.headers.get("Content-Type", "")
        if frames.looks_v2(content_type):  # the gateway session authenticates it
            self._sealed(path)
            return
        if frames.looks_v1(content_type):
            exc = sealed.unsupported_v1()
            self._error(exc.status, exc.kind, exc.message)
            return
        body = self._authorized()
        if body is None:
            return
        if self.server.require_sealed:
            self._error(403, "sealing_required", "this enclave serves sealed requests only")
        else:
            self._forward(path, body)

    def _authorized(self) -> bytes | None:
        """The request's body if the gateway authorized this request (`gateway_auth`); else
        None, the refusal sent. A request without the header is refused unread."""
        callers, value = self.server.callers, self.headers.get(gateway_auth.HEADER)
        try:
            callers.precheck(value)
            body = self._body(proxy.MAX_BODY)
            key_id = self.server.keys.hpke_key_id
            callers.check(value, self.command, self.path, body, key_id, time.time())
        except gateway_auth.Refused as exc:
            self._error(exc.status, exc.kind, exc.message)
            return None
        except proxy.RequestError as exc:
            self._error(exc.status, exc.kind, str(exc))
            return None
        return body

    def _forward(self, path: str, body: bytes) -> None:
        server = self.server
        try:
            with proxy.forward(
                server.engine_url,
                self.command,
                path,
                self.headers.items(),
                body,
                server.engine_timeout_s,
                bearer=server.secrets.engine_api_key,
            ) as answer:
                self._relay(
                    answer.status, answer.reason, answer.headers, answer.length, answer.chunks()
                )
        except proxy.ProxyError as exc:
            self._error(exc.status, exc.kind, str(exc))

    def _sealed(self, path: str) -> None:
        server = self.server
        try:
            opened = sealed.open_inference(
                server.sealing,
                self._body(sealed.MAX_BODY),
                path,
                time.time(),
                request_id=self.headers.get(sealed.REQUEST_ID_HEADER),
                upstream_model=self.headers.get(sealed.UPSTREAM_MODEL_HEADER),
            )
            with proxy.forward(
                server.engine_url,
                "POST",
                path,
                opened.engine_headers,
                opened.body,
                server.engine_timeout_s,
                bearer=server.secrets.engine_api_key,
            ) as engine:
                body = answer.sealed_body(engine, opened, server.keys)
                if engine.length is None:  # a stream: each frame leaves as it is sealed
                    self._relay(engine.status, engine.reason, sealed.RESPONSE_HEADERS, None, body)
                else:  # a whole answer is wanted whole: one write, with its length
                    whole = b"".join(body)
                    self._relay(
                        engine.status, engine.reason, sealed.RESPONSE_HEADERS, len(whole), whole
                    )
        except sealed.SealedRejected as exc:
            self._error(exc.status, exc.kind, exc.message)
        except proxy.ProxyError as exc:
            self._error(exc.status, exc.kind, str(exc))

    def _session(self, path: str) -> None:
        """POST /v1/sessions (a HELLO -> WELCOME) or /v1/sessions/roots (-> ROOT frames)."""
        if frames.looks_v1(self.headers.get("Content-Type", "")):
            exc = sealed.unsupported_v1()
            self._error(exc.status, exc.kind, exc.message)
            return
        sealing = self.server.sealing
        try:
            raw, now = self._body(MAX_SESSION_BODY), time.time()
            if path == sealed.SESSIONS_PATH:
                data = handshake.open_session(sealing, raw, now)
            else:
                data = handshake.flush_roots(sealing, raw, now)
        except sealed.SealedRejected as exc:
            self._error(exc.status, exc.kind, exc.message)
        except proxy.RequestError as exc:
            self._error(exc.status, exc.kind, str(exc))
        else:
            self._relay(200, "OK", sealed.RESPONSE_HEADERS, len(data), data)

    def _release_secrets(self) -> None:
        if not self.server.keys.release_public:
            message = "this agent pins no release key (TEEROUTE_AGENT_RELEASE_KEY)"
            self._error(403, "secret_release_disabled", message)
            return
        if not self.server.keys.pool:  # no pool's secrets are for an enclave serving none
            message = "pool.binding: this agent serves no pool (TEEROUTE_AGENT_POOL)"
            self._error(403, "secret_release_disabled", message)
            return
        try:
            release = sealed.open_release(self.server.keys, self._body(MAX_RELEASE))
            self.server.secrets.replace(release.secrets, release.issued_ns)
        except sealed.SealedRejected as exc:
            self._error(exc.status, exc.kind, exc.message)
        except proxy.RequestError as exc:
            self._error(exc.status, exc.kind, str(exc))
        except SecretRejected as exc:
            self._error(400, "secrets_invalid", str(exc))
        except StaleRelease as exc:
            self._error(409, "release_stale", str(exc))
        except OSError as exc:
            self._error(500, "secrets_unwritable", f"cannot write the secrets: {exc.strerror}")
        else:
            _log(f"secrets: {len(release.secrets)} released")
            self.send_response(204)
            self.end_headers()

    def _relay(
        self,
        status: int,
        reason: str,
        headers: Iterable[tuple[str, str]],
        length: int | None,
        body: Generator[bytes, None, None] | bytes,
    ) -> None:
        """Status and headers, then each piece of the body as it comes; a body of unknown
        length is sent piece by piece (the headers first), one of known length in a single
        write with its headers once it is all buffered (or the buffer is full)."""
        chunked = length is None and self.request_version == "HTTP/1.1"
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        elif chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:  # an HTTP/1.0 client: the end of the connection ends the body
            self.send_header("Connection", "close")
        self.end_headers()
        streamed = length is None
        pieces = [body] if isinstance(body, bytes) else body
        try:
            if streamed:
                self.wfile.flush()
            for piece in pieces:
                self.wfile.write(proxy.chunk(piece) if chunked else piece)
                if streamed:
                    self.wfile.flush()
            if chunked:
                self.wfile.write(proxy.LAST_CHUNK)
        except (proxy.EngineError, OSError):
            # The client left (leaving the block closes the engine connection, so generation
            # stops) or the engine broke off: the status is sent, so only an incomplete body
            # on a closed connection can still tell the client.
            self.close_connection = True
        finally:
            if not isinstance(body, bytes):
                body.close()

    def _body(self, limit: int) -> bytes:
        if "Transfer-Encoding" in self.headers:
            raise proxy.LengthRequired("send the body with a Content-Length")
        length = proxy.content_length(self.headers.get_all("Content-Length") or [], limit)
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) < length:
            self.close_connection = True
            raise proxy.BadContentLength("the body ended before its Content-Length")
        return body

    def _unread(self) -> int | None:
        """Bytes of the request body still to come; None when unknown."""
        if self._body_read:
            return 0
        if "Transfer-Encoding" in self.headers:
            return None
        try:
            return proxy.content_length(self.headers.get_all("Content-Length") or [], DRAIN_LIMIT)
        except proxy.RequestError:
            return None

    def _drain(self, length: int) -> None:
        self.connection.settimeout(DRAIN_TIMEOUT_S)
        with contextlib.suppress(OSError):
            while length > 0:
                piece = self.rfile.read(min(length, proxy.READ_SIZE))
                if not piece:
                    return
                length -= len(piece)

    def _engine_ready(self) -> bool:
        if not self.server.engine_url or not self.server.engine_health:
            return True
        try:
            health = f"{self.server.engine_url}/health"  # settings allow only http(s) URLs
            with urllib.request.urlopen(health, timeout=1) as response:  # noqa: S310
                return bool(200 <= response.status < 300)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _error(self, status: int, kind: str, message: str) -> None:
        """An error answer; a request body left unread closes the connection after it (it
        must not be taken for the next request)."""
        unread = self._unread()
        self._send(status, {"error": {"message": message, "type": kind}}, close=unread != 0)
        if unread:
            self._drain(unread)

    def _send(self, status: int, body: Any, close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?")[0] if self.command else "-"
        _log(f"{self.command or '-'} {path} {code}")

    def log_message(self, format: str, *args: Any) -> None:
        _log(_numbers_only(format, args))


def _nonce(body: bytes) -> bytes:
    try:
        return base64.b64decode(json.loads(body or b"null")["nonce"], validate=True)
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise ValueError('expected {"nonce": "<base64 of 32 bytes>"}') from None


def _numbers_only(format: str, args: tuple[Any, ...]) -> str:
    """http.server's own notes (malformed requests, timeouts) without their text, which may
    quote the request."""
    values = iter(args)
    return re.sub(
        r"%[a-z]", lambda _: str(v) if isinstance(v := next(values, ""), int) else "…", format
    )


def _log(line: str) -> None:
    print(f"agent: {line}", file=sys.stderr, flush=True)
