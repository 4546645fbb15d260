"""A gateway that attests itself, as a real process: `teeroute gateway serve` over HTTPS with a
self-signed certificate made here and the simulated TEE's chip key, plus a relay that stands
between a client and it (another TLS key, or plain HTTP), as an attacker in the middle would."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .miners import NODE
from .procs import CLI, START_TIMEOUT_S, Proc, free_port, write_config

ATTESTATION = "/v1/gateway/attestation"


def tls_files(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), as `<name>.crt`/`.key`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"teeroute test {name}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def attested_config(directory: Path, chips: Path, cert: Path, key: Path) -> Path:
    """A config file for a gateway on the simulated TEE (paths relative to the file, as an
    operator would write them next to it)."""
    settings = {
        "tee": "simulated",
        "simulatedChipDir": str(chips),
        "simulatedNode": NODE,
        "tlsCertFile": cert.name if cert.parent == directory else str(cert),
        "tlsKeyFile": key.name if key.parent == directory else str(key),
    }
    pools = {"pool-a": [("e0", "http://127.0.0.1:1")]}
    return write_config(directory / "gateway.yaml", pools, settings=settings)


def attested_files(directory: Path, chips: Path, name: str) -> tuple[Path, Path, Path]:
    """In `directory` (made if missing): a TLS pair named `name` and an `attested_config`
    using it; (cert, key, config)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = tls_files(directory, name)
    return cert, key, attested_config(directory, chips, cert, key)


@contextmanager
def https_gateway(config: Path, cert: Path, name: str = "gateway") -> Iterator[Proc]:
    """`teeroute gateway serve --config` whose /readyz answers over HTTPS (checked against
    `cert`, so the process serves exactly that certificate)."""
    port = free_port()
    argv = [*CLI, "gateway", "serve", "--config", str(config), "--port", str(port)]
    log = config.parent / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEEROUTE_")}
    with log.open("wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env)
    proc = Proc(f"https://127.0.0.1:{port}", process, log)
    try:
        _wait_tls(proc, ssl.create_default_context(cafile=str(cert)))
        yield proc
    finally:
        proc.stop()


def _wait_tls(proc: Proc, context: ssl.SSLContext) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            pytest.fail(f"the gateway exited ({proc.process.returncode}): {proc.log.read_text()}")
        try:
            if httpx.get(proc.url + "/readyz", verify=context, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"the gateway did not become ready: {proc.log.read_text()}")


@contextmanager
def relay(target: str, tls: tuple[Path, Path] | None) -> Iterator[str]:
    """A server in the middle that passes attestation requests on to `target` and its answers
    back unchanged: over TLS with another key (`tls`), or over plain HTTP (None)."""

    class Relay(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            answer = httpx.post(
                target + self.path,
                content=body,
                headers={"Content-Type": "application/json"},
                verify=False,  # noqa: S501 - the attacker does not care whom it relays
                timeout=10,
            )
            self.send_response(answer.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def config_with(path: Path, **settings: Any) -> Path:
    """A copy of the config at `path` with its GatewayConfig settings changed (None: removed)."""
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]["spec"]
    for name, value in settings.items():
        if value is None:
            spec.pop(name, None)
        else:
            spec[name] = value
    target = path.with_name(f"changed-{len(list(path.parent.glob('changed-*')))}.yaml")
    target.write_text(yaml.safe_dump_all(docs))
    return target
