"""Judging the gateway's attestation answer as if the gateway were hostile: real simulated
evidence, our own nonce, the key fingerprints the gateway routes by; verified enclaves cached
for min(maxEvidenceAge, 5 min)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from teeroute import cli
from teeroute.client.attest import Attestor, RefusedEnclave, VerifiedEnclave, judge
from teeroute.client.errors import GatewayError
from teeroute.client.policy import ClientPolicy
from teeroute.sealing import envelope

from .fakes import MODEL, Chip, FakeEnclave, FakeGateway, make_chip, simulated_policy


@pytest.fixture(scope="module")
def chip() -> Chip:
    return make_chip()


@pytest.fixture
def policy(chip: Chip, tmp_path: Path) -> ClientPolicy:
    return simulated_policy(chip, tmp_path)


def judged(entry: Any, nonce: bytes, policy: ClientPolicy) -> VerifiedEnclave | RefusedEnclave:
    now = dt.datetime.now(dt.UTC)
    return judge(entry, nonce=nonce, issued_at=now, now=now, policy=policy)


def refused(entry: Any, nonce: bytes, policy: ClientPolicy) -> RefusedEnclave:
    outcome = judged(entry, nonce, policy)
    assert isinstance(outcome, RefusedEnclave), outcome
    return outcome


def test_fresh_evidence_for_our_nonce_is_verified(chip: Chip, policy: ClientPolicy) -> None:
    enclave = FakeEnclave(chip)
    nonce = secrets.token_bytes(32)
    outcome = judged(enclave.entry(nonce), nonce, policy)
    assert isinstance(outcome, VerifiedEnclave)
    assert outcome.hpke_public == enclave.hpke_public
    assert outcome.hpke_key_sha256 == enclave.key_id
    assert outcome.signing_key_sha256 == envelope.key_id(enclave.signing_public)
    assert outcome.measurement == "ab" * 48
    assert outcome.endpoint_id == "ns/pool-a/e0"
    assert outcome.pool == "ns/pool-a"
    assert outcome.tee == "simulated"
    assert len(outcome.chip_id) == 128
    statuses = {c.name: c.status for c in outcome.checks}
    assert statuses["freshness.nonce"] == "passed"
    assert statuses["binding.report_data"] == "passed"


def test_evidence_for_another_nonce_is_a_replay(chip: Chip, policy: ClientPolicy) -> None:
    enclave = FakeEnclave(chip)
    old = enclave.entry(secrets.token_bytes(32))
    assert refused(old, secrets.token_bytes(32), policy).failed == ("freshness.nonce",)


def test_a_nonce_swapped_into_old_evidence_breaks_the_binding(
    chip: Chip, policy: ClientPolicy
) -> None:
    enclave = FakeEnclave(chip)
    nonce = secrets.token_bytes(32)
    entry = enclave.entry(secrets.token_bytes(32))
    entry["evidence"]["nonce"] = base64.b64encode(nonce).decode()
    assert refused(entry, nonce, policy).failed == ("binding.report_data",)


def test_routed_keys_must_be_the_attested_ones(chip: Chip, policy: ClientPolicy) -> None:
    nonce = secrets.token_bytes(32)
    entry = FakeEnclave(chip).entry(nonce)
    entry["hpke_key_sha256"] = FakeEnclave(chip).key_id  # the gateway would route elsewhere
    entry["signing_key_sha256"] = "00" * 32
    assert refused(entry, nonce, policy).failed == ("keys.hpke", "keys.signing")


def test_keys_swapped_in_the_document_break_the_binding(chip: Chip, policy: ClientPolicy) -> None:
    nonce = secrets.token_bytes(32)
    enclave, other = FakeEnclave(chip), FakeEnclave(chip)
    entry = enclave.entry(nonce)
    entry["evidence"]["enclave_keys"]["hpke"] = base64.b64encode(other.hpke_public).decode()
    entry["hpke_key_sha256"] = other.key_id
    assert refused(entry, nonce, policy).failed == ("binding.report_data",)


def test_the_default_policy_refuses_a_simulated_enclave(chip: Chip) -> None:
    nonce = secrets.token_bytes(32)
    outcome = refused(FakeEnclave(chip).entry(nonce), nonce, ClientPolicy())
    assert outcome.failed == ("policy.tee_allowed",)
    assert "allowed: sev-snp, tdx" in outcome.checks[-1].detail


def test_a_measurement_outside_the_allowlist_is_refused(chip: Chip, tmp_path: Path) -> None:
    pinned = simulated_policy(chip, tmp_path, allowedMeasurements=["cd" * 48])
    nonce = secrets.token_bytes(32)
    assert refused(FakeEnclave(chip).entry(nonce), nonce, pinned).failed == ("policy.measurement",)


def test_debug_enclaves_are_refused(chip: Chip, policy: ClientPolicy) -> None:
    nonce = secrets.token_bytes(32)
    entry = FakeEnclave(chip, debug=True).entry(nonce)
    assert refused(entry, nonce, policy).failed == ("policy.debug_forbidden",)


def test_evidence_from_an_untrusted_chip_is_refused(chip: Chip, policy: ClientPolicy) -> None:
    nonce = secrets.token_bytes(32)
    entry = FakeEnclave(make_chip()).entry(nonce)  # another root: not the one we trust
    assert "sim.chain.chip_signed_by_root" in refused(entry, nonce, policy).failed


def test_stale_challenges_fail_the_age_check(chip: Chip, tmp_path: Path) -> None:
    strict = simulated_policy(chip, tmp_path, maxEvidenceAge="30s")
    nonce = secrets.token_bytes(32)
    now = dt.datetime.now(dt.UTC)
    outcome = judge(
        FakeEnclave(chip).entry(nonce),
        nonce=nonce,
        issued_at=now - dt.timedelta(minutes=2),
        now=now,
        policy=strict,
    )
    assert isinstance(outcome, RefusedEnclave)
    assert outcome.failed == ("freshness.age",)


@pytest.mark.parametrize(
    ("entry", "check"),
    [
        (None, "entry.format"),
        ({"pool": "p", "evidence": {"tee": "simulated"}}, "evidence.document"),
        ({"pool": "p", "evidence": "not a document"}, "evidence.document"),
    ],
)
def test_malformed_entries_are_refused_by_name(
    entry: Any, check: str, policy: ClientPolicy
) -> None:
    assert refused(entry, secrets.token_bytes(32), policy).failed == (check,)


def test_tampered_evidence_fails_its_signature(chip: Chip, policy: ClientPolicy) -> None:
    nonce = secrets.token_bytes(32)
    entry = FakeEnclave(chip).entry(nonce)
    report = bytearray(base64.b64decode(entry["evidence"]["evidence"]))
    report[0x30] ^= 1  # a measurement bit
    entry["evidence"]["evidence"] = base64.b64encode(bytes(report)).decode()
    assert "sim.signature" in refused(entry, nonce, policy).failed


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def test_verified_enclaves_are_cached_until_the_ttl(chip: Chip, tmp_path: Path) -> None:
    policy = simulated_policy(chip, tmp_path, maxEvidenceAge="1m")
    gateway = FakeGateway([FakeEnclave(chip), FakeEnclave(chip, name="e1")])
    clock = Clock()
    attestor = Attestor(httpx.Client(transport=gateway.transport()), "http://gw", policy, clock)
    first = attestor.attest(MODEL, "sk-test")
    assert len(first.verified) == 2
    clock.now += dt.timedelta(seconds=59)
    assert attestor.attest(MODEL, "sk-test") is first
    assert gateway.attestations == 1
    clock.now += dt.timedelta(seconds=2)
    assert attestor.attest(MODEL, "sk-test") is not first
    assert gateway.attestations == 2


def test_forgetting_an_enclave_keeps_the_others(chip: Chip, policy: ClientPolicy) -> None:
    a, b = FakeEnclave(chip), FakeEnclave(chip, name="e1")
    attestor = Attestor(
        httpx.Client(transport=FakeGateway([a, b]).transport()), "http://gw", policy
    )
    attestor.attest(MODEL, "sk-test")
    attestor.forget(MODEL, a.key_id)
    assert [v.hpke_key_sha256 for v in attestor.attest(MODEL, "sk-test").verified] == [b.key_id]


def test_refusals_are_not_cached(chip: Chip) -> None:
    gateway = FakeGateway([FakeEnclave(chip)])
    attestor = Attestor(httpx.Client(transport=gateway.transport()), "http://gw", ClientPolicy())
    assert not attestor.attest(MODEL, None).verified
    assert not attestor.attest(MODEL, None).verified
    assert gateway.attestations == 2


def test_gateway_errors_pass_through(policy: ClientPolicy) -> None:
    def unknown(request: httpx.Request) -> httpx.Response:
        body = {"error": {"message": "no model x", "type": "not_found_error", "code": None}}
        return httpx.Response(404, json=body)

    attestor = Attestor(httpx.Client(transport=httpx.MockTransport(unknown)), "http://gw", policy)
    with pytest.raises(GatewayError, match="404: no model x") as raised:
        attestor.attest("x", None)
    assert raised.value.status == 404


def test_a_malformed_answer_is_a_refusal(policy: ClientPolicy) -> None:
    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": "nope"})

    attestor = Attestor(httpx.Client(transport=httpx.MockTransport(garbage)), "http://gw", policy)
    outcome = attestor.attest(MODEL, None)
    assert outcome.refused[0].failed == ("entry.format",)


def test_the_attest_command_prints_verified_and_refused(
    chip: Chip,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good, pinned_out = FakeEnclave(chip), FakeEnclave(chip, name="e1", measurement=b"\xcd" * 48)
    gateway = FakeGateway([good, pinned_out])
    real_client = httpx.Client

    def client(**kw: Any) -> httpx.Client:
        return real_client(transport=gateway.transport())

    monkeypatch.setattr(httpx, "Client", client)
    (tmp_path / "root.pem").write_bytes(chip.root_pem)
    path = tmp_path / "policy.yaml"
    policy = {
        "allowedTee": ["simulated"],
        "allowedMeasurements": ["ab" * 48],
        "trust": {"simulatedRoot": "root.pem"},
    }
    path.write_text(json.dumps(policy))
    argv = ["attest", "--gateway", "http://gw/v1", "--model", MODEL, "--policy", str(path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"verified  {good.endpoint_id}  simulated" in out
    assert f"hpke key    {good.key_id}" in out
    assert (
        f"REFUSED   {pinned_out.endpoint_id}  simulated  pool ns/pool-a: policy.measurement" in out
    )
    assert cli.main([*argv, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [v["endpoint_id"] for v in shown["verified"]] == [good.endpoint_id]
    assert shown["refused"][0]["failed"] == ["policy.measurement"]
    path.write_text(json.dumps({**policy, "allowedMeasurements": ["ee" * 48]}))
    assert cli.main(argv) == 5
    assert "no enclave of sim-model passed the policy" in capsys.readouterr().err


def test_endpoints_without_evidence_are_named(chip: Chip, policy: ClientPolicy) -> None:
    gateway = FakeGateway([FakeEnclave(chip)], unavailable=["ns/pool-a/e1"])
    attestor = Attestor(httpx.Client(transport=gateway.transport()), "http://gw", policy)
    outcome = attestor.attest(MODEL, None)
    assert len(outcome.verified) == 1
    assert [(r.endpoint_id, r.failed) for r in outcome.refused] == [
        ("ns/pool-a/e1", ("attestation.unavailable",))
    ]
