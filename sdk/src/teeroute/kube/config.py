"""Cluster connection settings from a kubeconfig or from inside a pod.

Supported: client certificates, bearer tokens, and the in-cluster service-account token (re-read
on every request, as it rotates). Exec credential plugins are not: they are refused with a clear
error rather than half-supported.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from teeroute.errors import TeerouteError

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeConfigError(TeerouteError):
    exit_code = 2


@dataclass(frozen=True)
class ClusterConfig:
    server: str
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    token_file: Path | None = None
    namespace: str = "default"

    def bearer_token(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca_pem.decode() if self.ca_pem else None)
        if self.cert_pem and self.key_pem:
            with tempfile.TemporaryDirectory(prefix="teeroute-kube-") as tmp:
                cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
                cert.write_bytes(self.cert_pem)
                key.touch(mode=0o600)
                key.write_bytes(self.key_pem)
                context.load_cert_chain(cert, key)
        return context


def load_config(kubeconfig: Path | None = None) -> ClusterConfig:
    """The explicit kubeconfig, else $KUBECONFIG, else in-cluster, else ~/.kube/config."""
    if kubeconfig is not None:
        return from_kubeconfig(kubeconfig)
    env = os.environ.get("KUBECONFIG")
    if env:
        return from_kubeconfig(Path(env.split(os.pathsep)[0]))
    if os.environ.get("KUBERNETES_SERVICE_HOST") and (SA_DIR / "token").exists():
        return in_cluster()
    default = Path.home() / ".kube" / "config"
    if default.exists():
        return from_kubeconfig(default)
    raise KubeConfigError("no cluster configured: set KUBECONFIG, or run inside a pod")


def in_cluster() -> ClusterConfig:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    return ClusterConfig(
        server=f"https://{host}:{port}",
        ca_pem=(SA_DIR / "ca.crt").read_bytes(),
        token_file=SA_DIR / "token",
        namespace=(SA_DIR / "namespace").read_text().strip(),
    )


def from_kubeconfig(path: Path, context_name: str | None = None) -> ClusterConfig:
    try:
        raw: dict[str, Any] = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    name = context_name or raw.get("current-context")
    context = _named(raw, "contexts", name, path)["context"]
    cluster = _named(raw, "clusters", context["cluster"], path)["cluster"]
    user = _named(raw, "users", context["user"], path)["user"]
    if "exec" in user or "auth-provider" in user:
        raise KubeConfigError(
            f"kubeconfig {path}: exec/auth-provider credentials are not "
            "supported; use a token or client certificate"
        )
    return ClusterConfig(
        server=cluster["server"],
        ca_pem=_data(cluster, "certificate-authority", path.parent),
        cert_pem=_data(user, "client-certificate", path.parent),
        key_pem=_data(user, "client-key", path.parent),
        token=user.get("token"),
        token_file=Path(user["tokenFile"]) if user.get("tokenFile") else None,
        namespace=context.get("namespace", "default"),
    )


def _named(raw: dict[str, Any], section: str, name: str | None, path: Path) -> dict[str, Any]:
    for entry in raw.get(section) or []:
        if entry.get("name") == name:
            found: dict[str, Any] = entry
            return found
    raise KubeConfigError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")


def _data(section: dict[str, Any], key: str, base: Path) -> bytes | None:
    if section.get(f"{key}-data"):
        return base64.b64decode(str(section[f"{key}-data"]))
    if section.get(key):
        return (base / str(section[key])).read_bytes()
    return None
