"""`teeroute proxy --require-attested-gateway`: the proxy checks the gateway's own attestation
before it listens, then sends only over TLS pinned to the certificate that passed. Real
processes: two gateways on the simulated TEE (same chip, same code, different TLS keys), a TCP
forwarder in front that an attacker on the path can point at either, and the proxy's CLI."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from teeroute.attestation.providers import code_measurement
from teeroute.attestation.verdict import Check
from teeroute.client.errors import GatewayUnreachable
from teeroute.client.gateway_identity import GatewayVerdict, pinned_tls
from teeroute_gateway.identity import PACKAGE as GATEWAY

from ..gateway.attested import attested_files, https_gateway, relay, tls_files
from ..gateway.miners import chip_dir
from ..gateway.procs import CLI, create_key, free_port, started

pytestmark = pytest.mark.timeout(180)

KEY_ENV = "TEEROUTE_PINNED_TEST_KEY"


class Forwarder:
    """A TCP forwarder on loopback whose target can change; changing it cuts every live
    connection, so the next request connects (and shakes hands) anew."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._live: list[socket.socket] = []
        self._lock = threading.Lock()
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def point_at(self, port: int) -> None:
        with self._lock:
            self.target_port = port
            for sock in self._live:
                with contextlib.suppress(OSError):  # shutdown wakes the pipe blocked on it
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._live.clear()

    def close(self) -> None:
        self._listener.close()
        self.point_at(self.target_port)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                self._live += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            sock.close()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("pinned")
    chips = chip_dir(tmp_path_factory.mktemp("chips"))
    cert, _, config = attested_files(tmp, chips, "gateway")
    twin_cert, _, twin_config = attested_files(tmp / "twin", chips, "twin")
    policy = tmp / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "allowedTee": ["simulated"],
                "allowedMeasurements": [code_measurement(GATEWAY).hex()],
                "trust": {"simulatedRoot": str(chips / "root.crt")},
            }
        )
    )
    api_key = create_key(config, "1")
    with (
        https_gateway(config, cert) as first,
        https_gateway(twin_config, twin_cert, name="twin") as twin,
    ):
        yield {"tmp": tmp, "first": first, "twin": twin, "policy": policy, "key": api_key}


@contextmanager
def pinned_proxy(gateway_url: str, policy: Path, api_key: str, log: Path) -> Iterator[str]:
    port = free_port()
    argv = [*CLI, "proxy", "--gateway", gateway_url, "--policy", str(policy)]
    argv += ["--port", str(port), "--api-key-env", KEY_ENV, "--require-attested-gateway"]
    with started([*argv, "--verbose"], port, log, "/healthz", {KEY_ENV: api_key}) as proc:
        yield proc.url


def test_requests_go_only_to_the_gateway_that_attested(parts: dict[str, Any]) -> None:
    forwarder = Forwarder(_port(parts["first"].url))
    log = parts["tmp"] / "proxy.log"
    try:
        front = f"https://127.0.0.1:{forwarder.port}"
        with pinned_proxy(front, parts["policy"], parts["key"], log) as proxy:
            models = httpx.get(f"{proxy}/v1/models", timeout=30)
            assert models.status_code == 200, models.text
            # the path now leads to the twin: the same chip and code, attested in its own
            # right, but not the key this proxy checked
            forwarder.point_at(_port(parts["twin"].url))
            moved = httpx.get(f"{proxy}/v1/models", timeout=30)
            forwarder.point_at(_port(parts["first"].url))
            back = httpx.get(f"{proxy}/v1/models", timeout=30)
    finally:
        forwarder.close()
    assert moved.status_code == 502, moved.text
    error = moved.json()["error"]
    assert error["code"] == "gateway_unreachable"
    assert "not the certificate the gateway attested" in error["message"]
    assert back.status_code == 200, back.text
    started_line = next(x for x in log.read_text().splitlines() if "/v1 -> " in x)
    assert "gateway attested, simulated, TLS key" in started_line
    assert "PASS      gateway" in log.read_text()


def _refused(gateway_url: str, policy: Path | None) -> subprocess.CompletedProcess[str]:
    argv = [*CLI, "proxy", "--gateway", gateway_url, "--port", "0"]
    argv += ["--require-attested-gateway", *(["--policy", str(policy)] if policy else [])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_a_gateway_refused_by_the_policy_starts_nothing(parts: dict[str, Any]) -> None:
    done = _refused(parts["first"].url, None)  # default policy: hardware TEEs only
    assert done.returncode == 5, done.stderr
    assert "REFUSED   gateway" in done.stderr and "policy.tee_allowed" in done.stderr
    assert "not started" in done.stderr and "/v1 -> " not in done.stderr


@pytest.mark.parametrize("tls", ["another key", "none"])
def test_a_server_in_the_middle_is_refused_before_anything_listens(
    parts: dict[str, Any], tls: str
) -> None:
    middle_tls = tls_files(parts["tmp"], "middle") if tls == "another key" else None
    with relay(parts["first"].url, middle_tls) as middle:
        done = _refused(middle, parts["policy"])
    assert done.returncode == 5, done.stderr
    assert "tls_binding" in done.stderr and "not started" in done.stderr


def test_only_a_verdict_that_passed_over_tls_can_be_pinned() -> None:
    passed = (Check("document", "passed", ""), Check("tls_binding", "passed", ""))
    with pytest.raises(ValueError):
        pinned_tls(GatewayVerdict("https://g", passed))  # passed, but no certificate kept
    failed = (Check("document", "passed", ""), Check("tls_binding", "failed", ""))
    with pytest.raises(ValueError):
        pinned_tls(GatewayVerdict("https://g", failed, certificate=b"0"))


def test_an_unreachable_gateway_is_named_by_the_transport_error_otherwise() -> None:
    error = GatewayUnreachable.of("https://g", httpx.ConnectError("refused"))
    assert str(error) == "gateway https://g: ConnectError"
