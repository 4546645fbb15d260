"""A small JSON client for the Kubernetes API, from a kubeconfig with client certificates.

The runner works on raw objects (dicts shaped like the API's JSON), lists and watches
pods, patches their status and requests tokens; this is all it needs, with errors typed.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

Obj = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class KubeRest:
    def __init__(self, kubeconfig: Path, timeout_s: float = 30.0) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        self.server = cluster["server"]
        self._http = httpx.Client(base_url=self.server, verify=_tls_context(cfg), timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, **params: str) -> Obj:
        return self._send("GET", path, params=params)

    def post(self, path: str, body: Obj) -> Obj:
        return self._send("POST", path, json=body)

    def patch(self, path: str, body: Obj, kind: str = "merge") -> Obj:
        """kind: merge, strategic, or apply (server-side apply as `teeroute-sandbox`)."""
        content_type = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "apply": "application/apply-patch+yaml",
        }[kind]
        params = {"fieldManager": "teeroute-sandbox", "force": "true"} if kind == "apply" else {}
        return self._send(
            "PATCH",
            path,
            params=params,
            content=json.dumps(body),
            headers={"Content-Type": content_type},
        )

    def delete(self, path: str) -> Obj:
        return self._send("DELETE", path)

    def get_or_none(self, path: str) -> Obj | None:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def watch(self, path: str, resource_version: str, timeout_s: int = 300) -> Iterator[Obj]:
        """Watch events (`{"type", "object"}`) until the server closes the stream."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_s),
        }
        with self._http.stream(
            "GET", path, params=params, timeout=httpx.Timeout(30.0, read=timeout_s + 30)
        ) as response:
            if response.status_code != 200:
                response.read()
                raise ApiError(response.status_code, _message(response))
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)

    def _send(self, method: str, path: str, **kwargs: Any) -> Obj:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(response.status_code, _message(response))
        result: Obj = response.json()
        return result


def _tls_context(cfg: Obj) -> ssl.SSLContext:
    """Trust the kubeconfig's CA and present its client certificate. The key is loaded
    from a private temporary file that is gone again before this returns."""
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    context = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    with tempfile.TemporaryDirectory(prefix="kuberest-") as tmp:
        cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.touch(mode=0o600)
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        context.load_cert_chain(cert, key)
    return context


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text[:200]))
    except ValueError:
        return response.text[:200]
