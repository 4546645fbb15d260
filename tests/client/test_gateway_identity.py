"""`teeroute attest --self`: the client checks the gateway's own evidence against its policy and
the TLS key of the very connection it asked on. A real gateway process on the simulated TEE
passes; wrong code, a simulated TEE the policy does not allow, a server in the middle with its
own TLS key or without TLS, and an enclave's evidence passed off as the gateway's are refused,
each by the check's name."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from teeroute.attestation.policy import bind
from teeroute.attestation.providers import SimulatedProvider, code_measurement
from teeroute.client.errors import GatewayError
from teeroute.client.gateway_identity import (
    GatewayVerdict,
    attest_gateway,
    judge_gateway,
    spki_sha256,
)
from teeroute.client.policy import ClientPolicy, policy_from_mapping
from teeroute_gateway.identity import PACKAGE as GATEWAY

from ..gateway.attested import attested_files, https_gateway, relay, tls_files
from ..gateway.miners import NODE, chip_dir
from ..gateway.procs import CLI, gateway, write_config

MEASUREMENT = code_measurement(GATEWAY).hex()


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("gateway-identity")
    chips = chip_dir(tmp_path_factory.mktemp("chips"))
    cert, _, config = attested_files(tmp, chips, "gateway")
    with https_gateway(config, cert) as proc:
        yield {"url": proc.url, "chips": chips, "tmp": tmp, "cert": cert}


def policy(parts: dict[str, Any], **keys: Any) -> ClientPolicy:
    raw = {
        "allowedTee": ["simulated"],
        "allowedMeasurements": [MEASUREMENT],
        "trust": {"simulatedRoot": str(parts["chips"] / "root.crt")},
        **keys,
    }
    return policy_from_mapping({k: v for k, v in raw.items() if v is not None}, "test")


def statuses(verdict: GatewayVerdict) -> dict[str, str]:
    return {c.name: c.status for c in verdict.checks}


def test_the_gateway_passes_a_policy_pinning_its_code(parts: dict[str, Any]) -> None:
    verdict = attest_gateway(parts["url"], policy(parts))
    assert verdict.ok, verdict.failed
    assert verdict.tee == "simulated" and verdict.measurement == MEASUREMENT
    cert = x509.load_pem_x509_certificate(parts["cert"].read_bytes())
    assert verdict.tls_spki_sha256 == spki_sha256(cert.public_bytes(Encoding.DER)).hex()
    seen = statuses(verdict)
    for name in ("document", "nonce", "policy.tee_allowed", "policy.measurement", "tls_binding"):
        assert seen[name] == "passed", name
    assert "binding.report_data" not in seen  # the enclave binding is not this document's


def test_other_code_is_refused(parts: dict[str, Any]) -> None:
    verdict = attest_gateway(parts["url"], policy(parts, allowedMeasurements=["ab" * 48]))
    assert verdict.failed == ["policy.measurement"]


def test_a_simulated_tee_is_refused_unless_the_policy_allows_it(parts: dict[str, Any]) -> None:
    hardware_only = policy_from_mapping({}, "default")
    verdict = attest_gateway(parts["url"], hardware_only)
    assert verdict.failed == ["policy.tee_allowed"]


def test_a_relay_with_another_tls_key_is_refused(parts: dict[str, Any]) -> None:
    other = tls_files(parts["tmp"], "attacker")
    with relay(parts["url"], other) as middle:
        verdict = attest_gateway(middle, policy(parts))
    assert verdict.failed == ["tls_binding"]
    assert statuses(verdict)["policy.measurement"] == "passed"  # genuine, but not this line


def test_a_second_gateway_on_the_same_chip_cannot_vouch_for_the_first(
    parts: dict[str, Any],
) -> None:
    """Two real gateways, same chip and code, different TLS keys: a document fetched from one
    is refused on the other's connection (the swap a host running both could try)."""
    cert, _, config = attested_files(parts["tmp"] / "twin", parts["chips"], "second")
    with https_gateway(config, cert, name="twin") as second:
        honest = attest_gateway(second.url, policy(parts))
    assert honest.ok, honest.failed
    nonce, raw = _document(parts["url"])
    verdict = judge_gateway(
        raw,
        url=second.url,
        nonce=nonce,
        peer_certificate=_der(cert),
        now=dt.datetime.now(dt.UTC),
        policy=policy(parts),
    )
    assert verdict.failed == ["tls_binding"]


def test_plain_http_is_refused_for_want_of_a_tls_key(parts: dict[str, Any]) -> None:
    with relay(parts["url"], None) as stripped:
        verdict = attest_gateway(stripped, policy(parts))
    assert verdict.failed == ["tls_binding"]
    assert "no TLS" in next(c.detail for c in verdict.checks if c.name == "tls_binding")


def test_an_enclave_document_does_not_pass_as_the_gateways(parts: dict[str, Any]) -> None:
    """An agent's evidence (same chip, report_data binding enclave keys) presented as the
    gateway's, claiming the gateway's TLS key: the domain-separated binding refuses it."""
    nonce = os.urandom(32)
    hpke, signing = os.urandom(32), os.urandom(32)
    provider = SimulatedProvider(parts["chips"], NODE, bytes.fromhex(MEASUREMENT))
    evidence = provider.evidence(bind(nonce, hpke, signing))
    der = _der(parts["cert"])
    raw = {
        "tee": "simulated",
        "nonce": base64.b64encode(nonce).decode(),
        "evidence": base64.b64encode(evidence.raw).decode(),
        "certificates": evidence.certificates,
        "tls_spki_sha256": spki_sha256(der).hex(),
        "produced_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    with_keys = {**raw, "enclave_keys": {"hpke": "", "signing": ""}}
    for document, failed in ((raw, ["tls_binding"]), (with_keys, ["document"])):
        judged = judge_gateway(
            document,
            url=parts["url"],
            nonce=nonce,
            peer_certificate=der,
            now=dt.datetime.now(dt.UTC),
            policy=policy(parts),
        )
        assert judged.failed == failed


def test_a_gateway_without_a_tee_is_an_error_not_a_pass(tmp_path: Path) -> None:
    config = write_config(tmp_path / "plain.yaml", {"pool-a": [("e0", "http://127.0.0.1:1")]})
    with gateway(config) as plain, pytest.raises(GatewayError) as caught:
        attest_gateway(plain.url, ClientPolicy())
    assert caught.value.status == 404 and caught.value.code == "gateway_not_attested"


def test_the_cli_prints_pass_and_refused_with_exit_codes(parts: dict[str, Any]) -> None:
    path = parts["tmp"] / "policy.yaml"
    path.write_text(
        json.dumps(
            {
                "allowedTee": ["simulated"],
                "allowedMeasurements": [MEASUREMENT],
                "trust": {"simulatedRoot": str(parts["chips"] / "root.crt")},
            }
        )
    )
    passed = _cli("--gateway", parts["url"], "--self", "--policy", str(path))
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.startswith("PASS") and "tls_binding" in passed.stdout
    as_json = _cli("--gateway", parts["url"] + "/v1", "--self", "--policy", str(path), "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["measurement"] == MEASUREMENT
    refused = _cli("--gateway", parts["url"], "--self")  # default policy: hardware TEEs only
    assert refused.returncode == 5
    assert refused.stdout.startswith("REFUSED") and "policy.tee_allowed" in refused.stdout


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "attest", *args], capture_output=True, text=True, timeout=60, check=False
    )


def _document(url: str) -> tuple[bytes, Any]:
    nonce = os.urandom(32)
    answer = httpx.post(
        url + "/v1/gateway/attestation",
        json={"nonce": base64.b64encode(nonce).decode()},
        verify=False,  # noqa: S501 - the document is what we look at here
        timeout=10,
    )
    return nonce, answer.json()


def _der(cert: Path) -> bytes:
    return x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
