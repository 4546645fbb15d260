"""`teeroute verify` and evidence documents, as users and the sweeper meet them."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from teeroute import cli
from teeroute.attestation import evidence, simulated
from teeroute.attestation.errors import CollateralUnavailable, EvidenceInvalid
from teeroute.attestation.policy import Policy, bind
from teeroute.attestation.x509chain import load_der

from .test_snp import MEASUREMENT, REPORT, VCEK, VECTORS

AT = "2025-06-01T00:00:00Z"
NOW = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_verify_snp_passes_and_prints_the_measurement(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "verify",
        "snp",
        str(VECTORS / "report-milan.bin"),
        "--vcek",
        str(VECTORS / "vcek-milan.der"),
        "--at",
        AT,
    )
    assert code == 0
    assert "sev-snp: verified" in out and MEASUREMENT in out


def test_verify_snp_json_and_policy_failures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"allowedMeasurements: ['{'0' * 96}']\ndebugForbidden: true\n")
    code, out, err = run(
        capsys,
        "verify",
        "snp",
        str(VECTORS / "report-milan.bin"),
        "--vcek",
        str(VECTORS / "vcek-milan.der"),
        "--policy",
        str(policy),
        "--at",
        AT,
        "--json",
    )
    assert code == 1
    verdict = json.loads(out)
    assert {c["name"] for c in verdict["checks"] if c["status"] == "failed"} == {
        "policy.measurement",
        "policy.debug_forbidden",
    }
    assert "policy.measurement" in err


def test_verify_snp_with_the_wrong_chain_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys,
        "verify",
        "snp",
        str(VECTORS / "report-milan.bin"),
        "--vcek",
        str(VECTORS / "vcek-milan.der"),
        "--chain",
        str(VECTORS / "ask_ark_genoa.pem"),
        "--at",
        AT,
    )
    assert code == 1 and "snp.chain.vcek_signed_by_ask" in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["verify", "snp", "/nonexistent", "--vcek", "/nonexistent"], 2, "cannot read"),
        (
            ["verify", "snp", "/etc/hostname", "--vcek", str(VECTORS / "vcek-milan.der")],
            3,
            "snp.parse",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(
    capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    got, _, err = run(capsys, *args)
    assert got == code and message in err


def test_a_policy_with_a_typo_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("debugForbiden: true\n")
    code, _, err = run(
        capsys,
        "verify",
        "snp",
        str(VECTORS / "report-milan.bin"),
        "--vcek",
        str(VECTORS / "vcek-milan.der"),
        "--policy",
        str(policy),
    )
    assert code == 2 and "debugForbiden" in err


def sim_document(tmp_path: Path, **changes: object) -> tuple[Path, Path]:
    root, root_key = simulated.new_root(NOW)
    chip, chip_key = simulated.issue_chip(root, root_key, "n1", NOW)
    nonce, hpke, signing = b"\1" * 32, b"\2" * 32, b"\3" * 32
    report = simulated.make_report(
        chip_key, measurement=b"\4" * 48, report_data=bind(nonce, hpke, signing)
    )
    doc = {
        "tee": "simulated",
        "nonce": b64(nonce),
        "evidence": b64(report),
        "certificates": [chip.public_bytes(Encoding.PEM).decode()],
        "enclave_keys": {"hpke": b64(hpke), "signing": b64(signing)},
        "produced_at": NOW.isoformat(),
        **changes,
    }
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    (tmp_path / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    (tmp_path / "allow.yaml").write_text("allowedTee: [simulated]\n")
    return tmp_path / "doc.json", tmp_path / "root.pem"


def test_verify_simulated_evidence_only_where_allowed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc, root = sim_document(tmp_path)
    base = ["verify", "evidence", str(doc), "--simulated-root", str(root)]
    assert run(capsys, *base)[0] == 1  # no policy: simulated is not trusted
    code, out, _ = run(capsys, *base, "--policy", str(tmp_path / "allow.yaml"))
    assert code == 0 and "binding.report_data" in out


def test_swapped_enclave_keys_break_the_binding(tmp_path: Path) -> None:
    doc_path, root = sim_document(
        tmp_path, enclave_keys={"hpke": b64(b"\x09" * 32), "signing": b64(b"\3" * 32)}
    )
    doc = evidence.EvidenceDocument.parse(json.loads(doc_path.read_text()))
    verdict = evidence.verify_document(
        doc,
        now=NOW,
        trust=evidence.Trust(root.read_bytes()),
        policy=Policy(allowed_tee=frozenset({"simulated"})),
    )
    assert [c.name for c in verdict.failed] == ["binding.report_data"]


def test_snp_document_with_vcek_pem_verifies_authenticity_and_binding() -> None:
    vcek_pem = load_der(VCEK, "test").public_bytes(Encoding.PEM).decode()
    doc = evidence.EvidenceDocument.parse(
        {
            "tee": "sev-snp",
            "nonce": b64(b"\0" * 32),
            "evidence": b64(REPORT),
            "certificates": [vcek_pem],
            "enclave_keys": {"hpke": b64(b"h"), "signing": b64(b"s")},
            "produced_at": "2025-06-01T00:00:00Z",
        }
    )
    verdict = evidence.verify_document(doc, now=dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
    assert verdict.status_of("snp.signature") == "passed"
    assert verdict.status_of("binding.report_data") == "failed"  # the vector binds no keys


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        ({"tee": "sgx"}, EvidenceInvalid, "tee"),
        (
            {
                "tee": "simulated",
                "nonce": "!!",
                "evidence": "",
                "certificates": [],
                "enclave_keys": {"hpke": "", "signing": ""},
                "produced_at": "2026-01-01T00:00:00Z",
            },
            EvidenceInvalid,
            "nonce is not base64",
        ),
        (
            {
                "tee": "tdx",
                "nonce": "",
                "evidence": "",
                "certificates": [],
                "enclave_keys": {"hpke": "", "signing": ""},
                "produced_at": "2026-01-01T00:00:00Z",
            },
            EvidenceInvalid,
            "tdx.parse: quote is 0 bytes",
        ),
        (
            {
                "tee": "simulated",
                "nonce": "",
                "evidence": "",
                "certificates": [],
                "enclave_keys": {"hpke": "", "signing": ""},
                "produced_at": "2026-01-01T00:00:00Z",
            },
            CollateralUnavailable,
            "simulated root",
        ),
    ],
)
def test_bad_documents_get_typed_errors(
    raw: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        evidence.verify_document(evidence.EvidenceDocument.parse(raw), now=NOW)
