"""The client policy file: the MinerPool policy keys plus trust roots; every error names its
field; simulated evidence is trusted only when the policy lists it and names its root."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from teeroute import cli
from teeroute.client.errors import PolicyError
from teeroute.client.policy import CACHE_LIMIT, ClientPolicy, allows, load_policy

from .fakes import make_chip


@pytest.fixture(scope="module")
def root_pem() -> bytes:
    return make_chip().root_pem


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_without_a_file_only_hardware_tees_are_trusted() -> None:
    policy = load_policy(None)
    assert policy.policy.allowed_tee == {"sev-snp", "tdx"}
    assert policy.policy.debug_forbidden is True
    assert not allows(policy, "simulated")
    assert allows(policy, "sev-snp")
    assert policy.cache_ttl == CACHE_LIMIT


def test_a_full_policy_file_with_relative_trust_paths(tmp_path: Path, root_pem: bytes) -> None:
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "sim.pem").write_bytes(root_pem)
    (tmp_path / "pcs").mkdir()
    path = write(
        tmp_path,
        """
allowedTee: [simulated, sev-snp]
allowedMeasurements: [ABAB]
minimumTcb: {tcb: 1}
debugForbidden: true
maxEvidenceAge: 90s
trust:
  simulatedRoot: roots/sim.pem
  tdxCollateral: pcs
""",
    )
    policy = load_policy(path)
    assert policy.policy.allowed_tee == frozenset({"simulated", "sev-snp"})
    assert policy.policy.allowed_measurements == frozenset({"abab"})
    assert policy.policy.minimum_tcb == {"tcb": 1}
    assert policy.trust.simulated_root_pem == root_pem
    assert policy.trust.tdx_collateral is not None
    assert policy.cache_ttl == dt.timedelta(seconds=90)
    assert allows(policy, "simulated")
    assert policy.source == str(path)


def test_json_policies_are_read_too(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"allowedTee": ["tdx"]}), "policy.json")
    assert load_policy(path).policy.allowed_tee == {"tdx"}


def test_the_cache_never_outlives_five_minutes(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "maxEvidenceAge: 1h")).cache_ttl == CACHE_LIMIT


def test_simulated_without_a_root_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"allowedTee: lists simulated.*trust.simulatedRoot"):
        load_policy(write(tmp_path, "allowedTee: [simulated]"))


def test_a_root_without_simulated_in_allowed_tee_trusts_nothing_more(
    tmp_path: Path, root_pem: bytes
) -> None:
    (tmp_path / "sim.pem").write_bytes(root_pem)
    policy = load_policy(write(tmp_path, "trust: {simulatedRoot: sim.pem}"))
    assert not allows(policy, "simulated")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("allowedTee: sev-snp", "allowedTee"),
        ("allowedTee: []", "allowedTee"),
        ("allowedTee: [sgx]", "allowedTee"),
        ("allowedMeasurements: [not-hex]", "allowedMeasurements"),
        ("allowedMeasurements: abab", "allowedMeasurements"),
        ("minimumTcb: {tcb: one}", "minimumTcb"),
        ("minimumTcb: [1]", "minimumTcb"),
        ("debugForbidden: sometimes", "debugForbidden"),
        ("maxEvidenceAge: 5 minutes", "maxEvidenceAge"),
        ("maxEvidenceAge: 300", "maxEvidenceAge"),
        ("allowedTees: [tdx]", "keys"),
        ("trust: {simulatedRoots: x.pem}", "trust.simulatedRoots"),
        ("trust: [x.pem]", "trust"),
        ("trust: {simulatedRoot: missing.pem}", "trust.simulatedRoot"),
        ("trust: {simulatedRoot: policy.yaml}", "trust.simulatedRoot"),
        ("trust: {tdxCollateral: missing-dir}", "trust.tdxCollateral"),
        ("- allowedTee", "document"),
        ("allowedTee: [tdx", "document"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert raised.value.field == field
    assert f"policy {path}: {field}:" in str(raised.value)


def test_a_misspelled_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="allowedTees"):
        load_policy(write(tmp_path, "allowedTees: [tdx]"))


def test_a_missing_policy_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError.__mro__[1], match="cannot read"):
        load_policy(tmp_path / "nope.yaml")


def test_the_cli_reports_a_bad_policy_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "allowedTee: [sgx]")
    code = cli.main(
        ["attest", "--gateway", "http://127.0.0.1:9", "--model", "m", "--policy", str(path)]
    )
    assert code == 2
    assert "allowedTee: unknown TEE type 'sgx'" in capsys.readouterr().err


def test_default_policy_object_matches_no_file() -> None:
    assert ClientPolicy() == load_policy(None)
