"""The gateway attests itself: a real `teeroute gateway serve` over HTTPS on the simulated TEE
answers a client's nonce with evidence of its own code, bound to the TLS key it serves, in a
shape no enclave document can be mistaken for; bad requests and bad settings are refused by
name."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from pydantic import ValidationError

from teeroute.attestation import x509chain
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.evidence import (
    EvidenceDocument,
    Trust,
    verify_document,
    verify_evidence,
)
from teeroute.attestation.policy import Policy, bind, bind_gateway
from teeroute.attestation.providers import code_measurement
from teeroute.client.gateway_identity import GatewayDocument
from teeroute_gateway.identity import PACKAGE as GATEWAY
from teeroute_gateway.settings import GatewaySettings

from .attested import (
    ATTESTATION,
    attested_files,
    config_with,
    https_gateway,
)
from .miners import NODE, chip_dir
from .procs import CLI, gateway, write_config


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("attested-gateway")
    chips = chip_dir(tmp_path_factory.mktemp("chips"))
    cert, _, config = attested_files(tmp, chips, "gateway")
    with https_gateway(config, cert) as proc:
        yield {"gateway": proc, "chips": chips, "cert": cert, "config": config}


def ask(parts: dict[str, Any], body: Any) -> httpx.Response:
    trusted = ssl.create_default_context(cafile=str(parts["cert"]))
    return httpx.post(parts["gateway"].url + ATTESTATION, json=body, verify=trusted, timeout=10)


def cert_spki_sha256(cert: Path) -> bytes:
    return bytes.fromhex(x509chain.key_id(x509.load_pem_x509_certificate(cert.read_bytes())))


def fresh_document(parts: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    nonce = os.urandom(32)
    answer = ask(parts, {"nonce": base64.b64encode(nonce).decode()})
    assert answer.status_code == 200, answer.text
    return nonce, answer.json()


def test_the_gateway_attests_its_code_and_its_tls_key(parts: dict[str, Any]) -> None:
    nonce, raw = fresh_document(parts)
    doc = GatewayDocument.model_validate(raw)
    spki = cert_spki_sha256(parts["cert"])
    assert doc.tee == "simulated"
    assert base64.b64decode(doc.nonce) == nonce
    assert doc.tls_spki_sha256 == spki.hex()
    verdict = verify_evidence(
        doc.tee,
        base64.b64decode(doc.evidence),
        doc.certificates,
        now=dt.datetime.now(dt.UTC),
        policy=Policy(
            allowed_tee=frozenset({"simulated"}),
            allowed_measurements=frozenset({code_measurement(GATEWAY).hex()}),
        ),
        trust=Trust(simulated_root_pem=(parts["chips"] / "root.crt").read_bytes()),
        challenge=None,
    )
    assert verdict.ok, verdict.failed
    assert verdict.status_of("policy.measurement") == "passed"
    assert verdict.claims["report_data"] == bind_gateway(nonce, spki).hex()


def test_each_nonce_gets_its_own_evidence(parts: dict[str, Any]) -> None:
    (_, first), (_, second) = fresh_document(parts), fresh_document(parts)
    assert first["evidence"] != second["evidence"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not json", "invalid_json"),
        ([], "invalid_json"),
        ({}, "invalid_nonce"),
        ({"nonce": 42}, "invalid_nonce"),
        ({"nonce": "not base64!"}, "invalid_nonce"),
        ({"nonce": base64.b64encode(b"short").decode()}, "invalid_nonce"),
        ({"nonce": base64.b64encode(bytes(33)).decode()}, "invalid_nonce"),
    ],
)
def test_a_bad_nonce_is_a_400_naming_it(parts: dict[str, Any], body: Any, code: str) -> None:
    trusted = ssl.create_default_context(cafile=str(parts["cert"]))
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    answer = httpx.post(
        parts["gateway"].url + ATTESTATION,
        content=content,
        headers={"Content-Type": "application/json"},
        verify=trusted,
        timeout=10,
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == code
    if code == "invalid_nonce":
        assert error["param"] == "nonce"


def test_an_oversized_request_is_refused(parts: dict[str, Any]) -> None:
    answer = ask(parts, {"nonce": "A" * 10_000})
    assert answer.status_code == 413


def test_a_gateway_without_a_tee_answers_404(tmp_path: Path) -> None:
    config = write_config(tmp_path / "plain.yaml", {"pool-a": [("e0", "http://127.0.0.1:1")]})
    with gateway(config) as plain:
        nonce = base64.b64encode(os.urandom(32)).decode()
        answer = httpx.post(plain.url + ATTESTATION, json={"nonce": nonce}, timeout=10)
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "gateway_not_attested" and "tee is off" in error["message"]


def test_gateway_evidence_never_passes_as_an_enclaves(parts: dict[str, Any]) -> None:
    nonce, raw = fresh_document(parts)
    with pytest.raises(EvidenceInvalid):  # no enclave keys: not an enclave document
        EvidenceDocument.parse(raw)
    # Dressed up with keys of the attacker's choice (even the ones that would make the
    # concatenation line up), the evidence still binds something else than an enclave's keys.
    spki = cert_spki_sha256(parts["cert"])
    for hpke, signing in [(spki, bytes(32)), (os.urandom(32), os.urandom(32))]:
        dressed = {k: v for k, v in raw.items() if k != "tls_spki_sha256"}
        dressed["enclave_keys"] = {
            "hpke": base64.b64encode(hpke).decode(),
            "signing": base64.b64encode(signing).decode(),
        }
        verdict = verify_document(
            EvidenceDocument.parse(dressed),
            now=dt.datetime.now(dt.UTC),
            policy=Policy(allowed_tee=frozenset({"simulated"})),
            trust=Trust(simulated_root_pem=(parts["chips"] / "root.crt").read_bytes()),
        )
        assert [c.name for c in verdict.failed] == ["binding.report_data"]
    assert bind_gateway(nonce, spki) != bind(nonce, spki, bytes(32))


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"tee": "simulated", "simulatedChipDir": "chips", "simulatedNode": "n"}, "tlsCertFile"),
        ({"tee": "tsm"}, "tlsCertFile"),
        ({"tlsCertFile": "a.crt"}, "tlsKeyFile"),
        ({"tee": "simulated", "tlsCertFile": "a", "tlsKeyFile": "b"}, "simulatedChipDir"),
        (
            {"tee": "simulated", "simulatedChipDir": "c", "tlsCertFile": "a", "tlsKeyFile": "b"},
            "simulatedNode",
        ),
        ({"simulatedChipDir": "chips"}, "only for tee simulated"),
        ({"tee": "on"}, "tee"),
    ],
)
def test_bad_self_attestation_settings_are_refused_by_name(
    settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        GatewaySettings.model_validate(settings)


def test_self_attestation_settings_come_from_the_environment_too() -> None:
    settings = GatewaySettings.from_env(
        {
            "TEEROUTE_GATEWAY_TEE": "simulated",
            "TEEROUTE_GATEWAY_SIMULATED_CHIP_DIR": "/chips",
            "TEEROUTE_GATEWAY_SIMULATED_NODE": NODE,
            "TEEROUTE_GATEWAY_TLS_CERT_FILE": "/tls/tls.crt",
            "TEEROUTE_GATEWAY_TLS_KEY_FILE": "/tls/tls.key",
        }
    )
    assert settings.tee == "simulated" and settings.simulated_chip_dir == Path("/chips")
    assert settings.tls_cert_file == Path("/tls/tls.crt")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"simulatedNode": "nowhere"}, "simulatedChipDir: no simulated chip for node 'nowhere'"),
        ({"tlsCertFile": "missing.crt"}, "tlsCertFile: cannot read"),
        ({"tee": "tsm", "simulatedChipDir": None, "simulatedNode": None}, "tee: tsm:"),
    ],
)
def test_the_gateway_stops_at_start_naming_the_setting(
    parts: dict[str, Any], change: dict[str, Any], named: str
) -> None:
    config = config_with(parts["config"], **change)
    done = subprocess.run(
        [*CLI, "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert named in done.stderr
