"""The operator's Prometheus endpoint, optionally behind a bearer token
(OperatorSettings.metrics_token_file): metric names and pool names say which pools exist and
how their miners fare, which not everyone who reaches the pod network should read.

A request without `Authorization: Bearer <token>` gets 401 (the token compared in constant
time); with no token set, the endpoint is open, as prometheus_client serves it.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
UNAUTHORIZED = b"401 Unauthorized: /metrics needs Authorization: Bearer <token>\n"


def authorized(header: str | None, token: str) -> bool:
    """Does an Authorization header carry `token` as its bearer token?"""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def guarded(app: WsgiApp, token: str) -> WsgiApp:
    def guard(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if authorized(environ.get("HTTP_AUTHORIZATION"), token):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
        )
        return [UNAUTHORIZED]

    return guard


def serve(registry: CollectorRegistry, port: int, token: str | None) -> None:
    """Serve the registry on all addresses at `port`, from a daemon thread."""
    app = make_wsgi_app(registry)
    server = make_server(
        "0.0.0.0",  # noqa: S104 - scraped from other pods
        port,
        app if token is None else guarded(app, token),
        ThreadingWSGIServer,
        handler_class=_Quiet,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """One log line per scrape is noise."""
