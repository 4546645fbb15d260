"""The enclave agent over real HTTP: evidence that the shared verifier accepts, bound to the
caller's nonce and to the agent's keys; clear errors for bad requests."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from teeroute.attestation import evidence, simulated
from teeroute.attestation.policy import Policy
from teeroute.attestation.providers import (
    ConfigfsTsmProvider,
    ProviderError,
    SimulatedProvider,
    code_measurement,
    snp_certificates,
)
from teeroute_enclave.__main__ import PACKAGE as AGENT
from teeroute_enclave.keys import EnclaveKeys
from teeroute_enclave.server import AgentServer

NOW = dt.datetime.now(dt.UTC)
MEASUREMENT = code_measurement(AGENT)  # what the agent reports: its own sources
VECTORS = Path(__file__).parents[3] / "shared" / "vectors"


@pytest.fixture(scope="module")
def chip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated.write_chip_dir(tmp_path_factory.mktemp("simulated-tee"), "node-a", NOW)


def serve(server: AgentServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def agent(chip_dir: Path) -> Iterator[tuple[str, AgentServer]]:
    server = AgentServer(
        ("127.0.0.1", 0), SimulatedProvider(chip_dir, "node-a", MEASUREMENT), EnclaveKeys.generate()
    )
    yield serve(server), server
    server.shutdown()


def call(url: str, body: bytes | None = None, method: str = "POST") -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def challenge(url: str, nonce: bytes) -> dict[str, Any]:
    status, doc = call(
        f"{url}/v1/attestation", json.dumps({"nonce": base64.b64encode(nonce).decode()}).encode()
    )
    assert status == 200, doc
    return dict(doc)


def test_evidence_verifies_and_binds_the_nonce_and_keys(
    agent: tuple[str, AgentServer], chip_dir: Path
) -> None:
    url, server = agent
    nonce = os.urandom(32)
    doc = evidence.EvidenceDocument.parse(challenge(url, nonce))
    assert base64.b64decode(doc.nonce) == nonce
    assert base64.b64decode(doc.enclave_keys.hpke) == server.keys.hpke_public
    policy = Policy(
        allowed_tee=frozenset({"simulated"}),
        allowed_measurements=frozenset({MEASUREMENT.hex()}),
    )
    verdict = evidence.verify_document(
        doc,
        now=dt.datetime.now(dt.UTC),
        policy=policy,
        trust=evidence.Trust((chip_dir / "root.crt").read_bytes()),
    )
    assert verdict.ok, verdict.failed
    assert verdict.status_of("binding.report_data") == "passed"


def test_each_challenge_gets_its_own_report(agent: tuple[str, AgentServer]) -> None:
    url, _ = agent
    first, second = challenge(url, b"\1" * 32), challenge(url, b"\2" * 32)
    assert first["evidence"] != second["evidence"]
    assert first["enclave_keys"] == second["enclave_keys"]  # the same enclave


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"not json", 400, "invalid_request"),
        (b"{}", 400, "invalid_request"),
        (json.dumps({"nonce": "%%%"}).encode(), 400, "invalid_request"),
        (
            json.dumps({"nonce": base64.b64encode(b"short").decode()}).encode(),
            400,
            "invalid_request",
        ),
        (b"{" + b" " * 5000 + b"}", 413, "invalid_request"),
    ],
)
def test_bad_requests_get_typed_4xx(
    agent: tuple[str, AgentServer], body: bytes, status: int, kind: str
) -> None:
    url, _ = agent
    got, error = call(f"{url}/v1/attestation", body)
    assert (got, error["error"]["type"]) == (status, kind)


def test_unknown_routes_are_404(agent: tuple[str, AgentServer]) -> None:
    url, _ = agent
    assert call(f"{url}/v1/secrets", None, "GET")[0] == 404
    assert call(f"{url}/healthz", b"{}", "POST")[0] == 404


class _Engine(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_health_follows_the_engine(chip_dir: Path) -> None:
    engine = HTTPServer(("127.0.0.1", 0), _Engine)
    engine_url = f"http://127.0.0.1:{engine.server_address[1]}"
    server = AgentServer(
        ("127.0.0.1", 0),
        SimulatedProvider(chip_dir, "node-a", MEASUREMENT),
        EnclaveKeys.generate(),
        engine_url,
    )
    url = serve(server)
    assert call(f"{url}/healthz", None, "GET")[0] == 503  # engine not serving yet
    threading.Thread(target=engine.serve_forever, daemon=True).start()
    status, body = call(f"{url}/healthz", None, "GET")
    assert status == 200 and body["tee"] == "simulated"
    engine.shutdown()
    server.shutdown()


def test_the_agent_process_refuses_to_start_without_its_chip(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TEEROUTE_TEE": "simulated",
        "NODE_NAME": "nowhere",
        "TEEROUTE_SIMULATED_DIR": str(tmp_path),
        "TEEROUTE_AGENT_PORT": "18443",
    }
    done = subprocess.run(
        [sys.executable, "-m", "teeroute_enclave"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "no simulated chip for node 'nowhere'" in done.stderr


def test_configfs_tsm_is_refused_where_there_is_no_tee(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="not a TEE guest"):
        ConfigfsTsmProvider(tmp_path / "tsm" / "report")


def test_snp_certificate_table_yields_the_vcek() -> None:
    vcek = (VECTORS / "sev-snp" / "vcek-milan.der").read_bytes()
    header = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd").bytes_le
    table = header + (48).to_bytes(4, "little") + len(vcek).to_bytes(4, "little")
    table += bytes(24) + vcek  # a zero entry ends the table; the VCEK follows at 48
    (pem,) = snp_certificates(table)
    assert pem.startswith("-----BEGIN CERTIFICATE-----")


def test_private_keys_never_show() -> None:
    keys = EnclaveKeys.generate()
    assert "Private" not in repr(keys)
    assert not [
        name for name in dir(keys) if "private" in name.lower() and not name.startswith("_")
    ]
    assert len(keys.hpke_public) == len(keys.signing_public) == 32


def test_the_listen_backlog_holds_a_burst_of_gateway_connections(
    agent: tuple[str, AgentServer],
) -> None:
    """The kernel's view of the listening socket (ss: Send-Q is the backlog): socketserver's
    default of 5 dropped connection attempts when the gateway reconnected in a burst."""
    port = agent[1].server_address[1]
    listing = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(listing[2]) >= 128, listing
