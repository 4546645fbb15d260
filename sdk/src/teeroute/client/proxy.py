"""`teeroute proxy`: a local OpenAI-compatible endpoint that seals every request.

    POST /v1/chat/completions, /v1/completions   sealed to an enclave verified here, answers
                                                 opened here: plaintext never leaves this host
                                                 in clear
    GET  /v1/models                              forwarded to the gateway as is (no content)
    GET  /healthz                                200

Point any OpenAI client at `http://127.0.0.1:PORT/v1`. Streams are relayed event by event as
their chunks open, over chunked transfer encoding, so tokens arrive as the enclave sends them;
only `data: [DONE]` waits for the receipt to verify. The usage-only chunk the enclave asks the
engine for (to count usage for its receipt) is dropped unless the client asked for usage, as
OpenAI does.

Errors are OpenAI error bodies: 403 `attestation_refused` (no enclave passed the policy; the
message names each endpoint's failed checks; nothing was sent), 503 `no_attested_enclave` (no
enclave gave evidence for our nonce), 502 `sealed_response_invalid` (truncated, a chunk or the
receipt failed; `code` names the check) — or, once a stream has begun, an SSE event with a
top-level `error` and `finish_reason: "error"` after which the body ends without its last
chunk — 502 `gateway_unreachable`, 400/401/411/413 for requests we cannot take, and the
gateway's own errors with their status and body. `--verbose` logs one line per request to
stderr (ids, enclave, key fingerprints, the client session or `one-shot`, receipt tokens),
never content.

Requests go in one client session per verified enclave (wire v2: one handshake, then one AEAD
per request; `SealedClient`), or, with `teeroute proxy --one-shot`, each with its own
handshake.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from teeroute.client.errors import (
    AttestationRefused,
    GatewayError,
    GatewayUnreachable,
    InvalidRequest,
    ResponseInvalid,
)
from teeroute.client.session import SEALED_PATHS, SealedClient, SealedResponse
from teeroute.sealing.errors import EnvelopeInvalid, SealingError
from teeroute.wire import EventSplitter, EventTooLarge

MAX_BODY = 8 << 20
MAX_EVENT = 1 << 20
"""Largest server-sent event of an opened answer held while it is unfinished (bytes)."""
IDLE_TIMEOUT_S = 75.0
LAST_CHUNK = b"0\r\n\r\n"
DONE = b"data: [DONE]"
ANSWER_HEADERS = ("x-request-id", "x-teeroute-pool", "x-teeroute-model")


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        client: SealedClient,
        api_key: str | None = None,
        verbose: bool = False,
        log: TextIO | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.client = client
        self.api_key = api_key
        self.verbose = verbose
        self.log = log or sys.stderr

    def note(self, line: str) -> None:
        if self.verbose:
            print(f"teeroute proxy: {line}", file=self.log, flush=True)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def error_body(
    kind: str, message: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code or kind, "param": param}}


def error_event(kind: str, message: str, code: str) -> bytes:
    event = {
        "error": {"message": message, "type": kind, "code": code},
        "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}],
    }
    return b"data: " + json.dumps(event).encode() + b"\n\n"


class EventRelay:
    """Passes SSE events through as they complete. `data: [DONE]` is held back until the
    receipt verified (so a client that stops reading at [DONE] still sees a failure first),
    and the usage-only chunk (no choices, a usage object) is dropped unless the client asked
    for usage."""

    def __init__(self, keep_usage: bool) -> None:
        self._keep_usage = keep_usage
        self._events = EventSplitter(MAX_EVENT)
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """Whole events to pass on now; EnvelopeInvalid once an unfinished one passes
        MAX_EVENT (only the new bytes are searched for an event's end)."""
        try:
            complete = self._events.feed(data)
        except EventTooLarge as exc:
            raise EnvelopeInvalid("answer.event", str(exc)) from None
        if not complete:
            return b""
        out = []
        for event in complete[:-2].split(b"\n\n"):
            if event.strip() == DONE:
                self._held += event + b"\n\n"
            elif self._keep_usage or not _usage_only(event):
                out.append(event + b"\n\n")
        return b"".join(out)

    def flush(self) -> bytes:
        """What is left once the answer verified: a partial event, then the held [DONE]."""
        rest, self._held = self._events.take_rest() + self._held, b""
        return rest


def _usage_only(event: bytes) -> bool:
    if b'"usage"' not in event or b'"choices"' not in event:
        return False
    data = b"".join(line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:"))
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("choices") == [] and bool(doc.get("usage"))


def _asks_usage(body: bytes) -> bool:
    with contextlib.suppress(ValueError, UnicodeDecodeError, AttributeError):
        return json.loads(body).get("stream_options", {}).get("include_usage") is True
    return False


class _Handler(BaseHTTPRequestHandler):
    server: ProxyServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_S

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/v1/models":
            self._models()
        elif path == "/healthz":
            self._json(200, {"status": "ok"})
        else:
            self._error(404, "not_found_error", f"no route GET {path}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._body()
        if body is None:
            return
        if path in SEALED_PATHS:
            self._sealed(path, body)
        else:
            self._error(404, "not_found_error", f"no route POST {path}")

    # --- requests -------------------------------------------------------------------------

    def _body(self) -> bytes | None:
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            self._error(411, "invalid_request_error", "send the body with a Content-Length")
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            status = 413 if length > MAX_BODY else 400
            self._error(status, "invalid_request_error", "bad or oversized Content-Length")
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _key(self) -> str | None:
        if self.server.api_key:
            return self.server.api_key
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None

    def _models(self) -> None:
        try:
            answer = self.server.client.get("/v1/models", self._key())
        except GatewayUnreachable as exc:
            self._error(502, "gateway_unreachable", str(exc))
            return
        self._send(
            answer.status_code,
            answer.content,
            answer.headers.get("content-type", "application/json"),
        )

    def _sealed(self, path: str, body: bytes) -> None:
        key = self._key()
        if key is None:
            self._error(
                401,
                "authentication_error",
                "no API key: set the proxy's key variable or send Authorization: Bearer",
                code="missing_api_key",
            )
            return
        server = self.server
        try:
            answer = server.client.request(path, body, api_key=key)
        except AttestationRefused as exc:
            server.note(f"refused {exc.model}: {exc}")
            if exc.unavailable:
                self._error(503, "no_attested_enclave", str(exc))
            else:
                self._error(403, "attestation_refused", str(exc))
            return
        except GatewayError as exc:
            server.note(f"gateway answered {exc.status} ({exc.code or '-'})")
            self._send(
                exc.status,
                exc.body,
                exc.headers.get("content-type", "application/json"),
                {k: v for k, v in exc.headers.items() if k != "content-type"},
            )
            return
        except InvalidRequest as exc:
            self._error(400, "invalid_request_error", str(exc), param=exc.param)
            return
        except GatewayUnreachable as exc:
            self._error(502, "gateway_unreachable", str(exc))
            return
        except SealingError as exc:
            server.note(f"sealed answer refused: {exc.check}")
            self._error(502, "sealed_response_invalid", str(exc), code=exc.check)
            return
        with answer:
            if answer.stream and answer.status == 200:
                self._stream(answer, _asks_usage(body))
            else:
                self._whole(answer)

    # --- answers --------------------------------------------------------------------------

    def _whole(self, answer: SealedResponse) -> None:
        try:
            data = answer.read()
            _require_complete(answer)
        except SealingError as exc:
            self._note(answer, f"receipt FAILED ({exc.check})")
            self._error(502, "sealed_response_invalid", str(exc), code=exc.check)
            return
        self._note(answer, "receipt ok")
        self._send(answer.status, data, "application/json", _answer_headers(answer))

    def _stream(self, answer: SealedResponse, asks_usage: bool) -> None:
        events = EventRelay(keep_usage=asks_usage)
        started = False
        try:
            for plain in answer:
                out = events.feed(plain)
                if out:
                    started = started or self._start_stream(answer)
                    self.wfile.write(self._piece(out))
            _require_complete(answer)
            self._note(answer, "receipt ok")
            rest = events.flush()
            started = started or self._start_stream(answer)
            self.wfile.write(self._piece(rest) + (LAST_CHUNK if self._chunked else b""))
        except SealingError as exc:
            self._note(answer, f"receipt FAILED ({exc.check})")
            if not started:
                self._error(502, "sealed_response_invalid", str(exc), code=exc.check)
                return
            self.close_connection = True  # no last chunk: the body is incomplete
            with contextlib.suppress(OSError):
                event = error_event("sealed_response_invalid", str(exc), exc.check)
                self.wfile.write(self._piece(event))
            return
        except OSError:  # the client left: closing the answer stops the enclave generating
            self.close_connection = True
            self._note(answer, "client left")

    def _start_stream(self, answer: SealedResponse) -> bool:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        for name, value in _answer_headers(answer).items():
            self.send_header(name, value)
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:  # an HTTP/1.0 client: the end of the connection ends the body
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        return True

    @property
    def _chunked(self) -> bool:
        return self.request_version == "HTTP/1.1"

    def _piece(self, data: bytes) -> bytes:
        if not data:
            return b""
        return chunk(data) if self._chunked else data

    def _note(self, answer: SealedResponse, outcome: str) -> None:
        enclave, receipt = answer.enclave, answer.receipt
        tokens = f"{receipt.input_tokens}+{receipt.output_tokens}" if receipt else "-"
        session = answer.session_id[:16] if answer.session_id else "one-shot"
        self.server.note(
            f"{answer.request_id or '-'} pool={enclave.pool} tee={enclave.tee} "
            f"measurement={enclave.measurement[:16]} hpke={enclave.hpke_key_sha256[:16]} "
            f"session={session} tokens={tokens} {outcome}"
        )

    def _error(
        self,
        status: int,
        kind: str,
        message: str,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        self._json(status, error_body(kind, message, code, param))

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # requests are noted (with --verbose) once their outcome is known

    def log_message(self, format: str, *args: Any) -> None:
        pass  # http.server's own notes may quote the request line


def _require_complete(answer: SealedResponse) -> None:
    if answer.receipt is not None and not answer.receipt.complete:
        raise ResponseInvalid(
            "receipt.complete", "the enclave reports that the engine's answer broke off"
        )


def _answer_headers(answer: SealedResponse) -> dict[str, str]:
    headers = {name: answer.headers[name] for name in ANSWER_HEADERS if name in answer.headers}
    headers["x-teeroute-enclave"] = answer.enclave.endpoint_id
    headers["x-teeroute-hpke-key"] = answer.enclave.hpke_key_sha256
    return headers
