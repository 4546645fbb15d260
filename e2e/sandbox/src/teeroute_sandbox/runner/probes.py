"""Readiness and liveness probes, as the kubelet runs them (httpGet, tcpSocket, exec).

The runner lives in the sandbox namespace, from where every pod IP is routed; exec probes
run through the launcher, inside the container's namespaces and mounts.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
ExecFn = Callable[[list[str], float], int]
"""Runs a command in the container with a timeout; returns its exit code."""


@dataclass(frozen=True)
class ProbeSpec:
    action: Obj
    initial_delay_s: float
    period_s: float
    timeout_s: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def parse(cls, raw: Obj) -> ProbeSpec:
        return cls(
            action=raw,
            initial_delay_s=raw.get("initialDelaySeconds", 0),
            period_s=raw.get("periodSeconds", 10),
            timeout_s=raw.get("timeoutSeconds", 1),
            success_threshold=raw.get("successThreshold", 1),
            failure_threshold=raw.get("failureThreshold", 3),
        )


def resolve_port(port: int | str, container: Obj) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"named port {port!r} is not declared by the container")


def check(spec: ProbeSpec, pod_ip: str, container: Obj, run_exec: ExecFn) -> bool:
    action = spec.action
    try:
        if "httpGet" in action:
            return _http(action["httpGet"], pod_ip, container, spec.timeout_s)
        if "tcpSocket" in action:
            port = resolve_port(action["tcpSocket"]["port"], container)
            with socket.create_connection((pod_ip, port), timeout=spec.timeout_s):
                return True
        if "exec" in action:
            return run_exec(list(action["exec"]["command"]), spec.timeout_s) == 0
    except (OSError, ValueError, http.client.HTTPException):
        return False
    return False  # a probe kind we cannot run is a failing probe, never a silent pass


def _http(get: Obj, pod_ip: str, container: Obj, timeout_s: float) -> bool:
    host = get.get("host") or pod_ip
    port = resolve_port(get["port"], container)
    conn: http.client.HTTPConnection
    if get.get("scheme", "HTTP").upper() == "HTTPS":
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # the kubelet does not verify probe certificates
        conn = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=insecure)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
    try:
        conn.request("GET", get.get("path", "/"), headers=headers)
        return 200 <= conn.getresponse().status < 400
    finally:
        conn.close()
