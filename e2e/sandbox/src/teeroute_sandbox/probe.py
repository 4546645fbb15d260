"""The sandbox probe image (`teeroute.dev/sandbox-probe:dev`): a real HTTP server that
shows, from inside a runner pod, what a container sees. Tests and `sandbox` demos use it.

    GET /healthz                      200 "ok"
    GET /whoami                       uid, gid, hostname, selected env, pod IP
    GET /file?path=P                  a file's text, only below $PROBE_READABLE (":"-list)
    GET /api/can-i?verb=V&resource=R&namespace=N
                                      a SelfSubjectAccessReview made with the pod's
                                      service-account token, as any in-cluster client does
    GET /api/whoami                   the apiserver's SelfSubjectReview of the token

With $PROBE_EXIT_AFTER_S set it exits with code 3 after that many seconds (a crash).

Listens on 0.0.0.0:$PROBE_LISTEN_PORT (default 8080), as a container would. (Not
$PROBE_PORT: a Service named `probe` makes the kubelet set that to `tcp://IP:PORT`.)
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SHOWN_ENV = (
    "POD_NAME",
    "POD_NAMESPACE",
    "POD_IP",
    "NODE_NAME",
    "HOSTNAME",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
)


def in_cluster_post(path: str, body: dict[str, Any]) -> dict[str, Any]:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ["KUBERNETES_SERVICE_PORT"]
    context = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
    request = urllib.request.Request(
        f"https://{host}:{port}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {(SA_DIR / 'token').read_text().strip()}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310 - https only
        result: dict[str, Any] = json.loads(response.read())
        return result


def readable(path: str) -> bool:
    allowed = [Path(p) for p in os.environ.get("PROBE_READABLE", "").split(":") if p]
    real = Path(os.path.realpath(path))
    return any(real == a or a in real.parents for a in allowed)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        routes = {
            "/healthz": self._healthz,
            "/whoami": self._whoami,
            "/file": self._file,
            "/api/can-i": self._can_i,
            "/api/whoami": self._api_whoami,
        }
        handler = routes.get(url.path)
        if handler is None:
            self._send(404, {"error": "not found"})
            return
        try:
            handler(query)
        except Exception as exc:  # a probe reports every failure to its caller
            self._send(500, {"error": f"{type(exc).__name__}: {exc}"})

    def _healthz(self, _: dict[str, str]) -> None:
        self._send(200, "ok")

    def _whoami(self, _: dict[str, str]) -> None:
        self._send(
            200,
            {
                "uid": os.getuid(),
                "gid": os.getgid(),
                "groups": os.getgroups(),
                "hostname": socket.gethostname(),
                "env": {k: os.environ.get(k) for k in SHOWN_ENV},
                "local_address": self.connection.getsockname()[0],
            },
        )

    def _file(self, query: dict[str, str]) -> None:
        path = query.get("path", "")
        if not readable(path):
            self._send(403, {"error": f"{path!r} is not below PROBE_READABLE"})
            return
        self._send(200, Path(path).read_text())

    def _can_i(self, query: dict[str, str]) -> None:
        review = in_cluster_post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "verb": query.get("verb", "get"),
                        "resource": query.get("resource", "pods"),
                        "namespace": query.get("namespace", ""),
                    }
                },
            },
        )
        self._send(200, {"allowed": bool(review["status"].get("allowed"))})

    def _api_whoami(self, _: dict[str, str]) -> None:
        review = in_cluster_post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        self._send(200, review["status"]["userInfo"])

    def _send(self, status: int, body: object) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "text/plain" if isinstance(body, str) else "application/json"
        )
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        print(f"probe: {self.command} {urlparse(self.path).path}", file=sys.stderr, flush=True)


def main() -> None:
    port = int(os.environ.get("PROBE_LISTEN_PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - a pod's address
    exit_after = os.environ.get("PROBE_EXIT_AFTER_S")
    if exit_after:  # lets tests watch the runner restart a crashing container
        threading.Timer(float(exit_after), lambda: os._exit(3)).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
