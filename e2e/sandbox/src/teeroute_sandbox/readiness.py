"""Probes that tell whether a sandbox component is ready. Each runs inside the namespace."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable

from teeroute_sandbox import pki as pkimod

Probe = Callable[[], bool]


def tcp(host: str, port: int) -> Probe:
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    return probe


def apiserver_ready(pki: pkimod.Pki, host: str) -> Probe:
    """GET /readyz with the admin client certificate: 200 once etcd and every post-start
    hook (bootstrap RBAC, priority levels, …) are done."""

    def probe() -> bool:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(pki.dir / "admin.crt", pki.dir / "admin.key")
        conn = http.client.HTTPSConnection(host, 443, context=context, timeout=2)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    return probe


def always() -> bool:
    return True
