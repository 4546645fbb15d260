"""The agent's HTTP API.

    GET  /healthz          200 when the agent can serve (and its engine answers), else 503
    POST /v1/attestation   {"nonce": base64 of 32 bytes} -> the evidence document

Errors are JSON `{"error": {"message", "type"}}` with 400 (bad request), 404, 413 (body over
4 KiB) or 503 (evidence unavailable). Bodies are never logged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from teeroute_enclave.documents import evidence_document
from teeroute_enclave.keys import EnclaveKeys
from teeroute_enclave.providers import Provider, ProviderError

MAX_BODY = 4096


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], provider: Provider, keys: EnclaveKeys, engine_url: str = ""
    ) -> None:
        super().__init__(address, _Handler)
        self.provider = provider
        self.keys = keys
        self.engine_url = engine_url.rstrip("/")


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer

    def do_GET(self) -> None:
        if self.path != "/healthz":
            self._error(404, "not_found", f"no route GET {self.path.split('?')[0]}")
        elif self._engine_ready():
            self._send(
                200,
                {
                    "status": "ok",
                    "tee": self.server.provider.tee,
                    "keys": self.server.keys.fingerprint(),
                },
            )
        else:
            self._error(503, "engine_unavailable", "the engine does not answer yet")

    def do_POST(self) -> None:
        if self.path != "/v1/attestation":
            self._error(404, "not_found", f"no route POST {self.path.split('?')[0]}")
            return
        nonce = self._nonce()
        if nonce is None:
            return
        try:
            document = evidence_document(
                self.server.provider, self.server.keys, nonce, dt.datetime.now(dt.UTC)
            )
        except ValueError as exc:
            self._error(400, "invalid_request", str(exc))
        except ProviderError as exc:
            self._error(503, "evidence_unavailable", str(exc))
        else:
            self._send(200, document)

    def _nonce(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._error(
                413 if length > MAX_BODY else 400,
                "invalid_request",
                f"the body must be JSON of at most {MAX_BODY} bytes",
            )
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"null")
            return base64.b64decode(body["nonce"], validate=True)
        except (ValueError, TypeError, KeyError, binascii.Error):
            self._error(400, "invalid_request", 'expected {"nonce": "<base64 of 32 bytes>"}')
            return None

    def _engine_ready(self) -> bool:
        if not self.server.engine_url:
            return True
        try:
            health = f"{self.server.engine_url}/health"  # settings allow only http(s) URLs
            with urllib.request.urlopen(health, timeout=1) as response:  # noqa: S310
                return bool(200 <= response.status < 300)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _error(self, status: int, kind: str, message: str) -> None:
        self._send(status, {"error": {"message": message, "type": kind}})

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        print(
            f"agent: {self.command} {self.path.split('?')[0]} {args[1] if len(args) > 1 else ''}",
            file=sys.stderr,
            flush=True,
        )
