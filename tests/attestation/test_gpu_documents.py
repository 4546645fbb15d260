"""GPU evidence inside an evidence document: verified under the nonce derived from the CPU
challenge, its checks joined to the CPU verdict as `gpu.*`, and required where the pool says."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from teeroute.attestation import evidence, nvidia
from teeroute.attestation.policy import Policy

from . import test_nvidia as gpu_vectors
from .test_cli_and_documents import NOW, sim_document

SIM_POLICY = Policy(allowed_tee=frozenset({"simulated"}))


def gpu_part() -> dict[str, object]:
    return {
        "report": gpu_vectors.REPORT.hex(),
        "certificates": [gpu_vectors.CHAIN.decode()],
    }


def verify(tmp_path: Path, require_gpu: bool = False, **changes: object) -> evidence.Verdict:
    doc_path, root = sim_document(tmp_path, **changes)
    doc = evidence.EvidenceDocument.parse(json.loads(doc_path.read_text()))
    return evidence.verify_document(
        doc,
        now=NOW,  # the NVIDIA vector's chain is valid until 9999
        trust=evidence.Trust(root.read_bytes()),
        policy=SIM_POLICY,
        require_gpu=require_gpu,
    )


def test_cpu_only_document_has_a_chip_id_and_no_gpu_checks(tmp_path: Path) -> None:
    verdict = verify(tmp_path)
    assert verdict.ok
    assert len(verdict.claims["chip_id"]) == 128
    assert not [c for c in verdict.checks if c.name.startswith("gpu.")]


def test_a_pool_that_requires_a_gpu_rejects_evidence_without_one(tmp_path: Path) -> None:
    verdict = verify(tmp_path, require_gpu=True)
    assert [c.name for c in verdict.failed] == ["gpu.evidence_present"]


def test_gpu_evidence_answering_another_challenge_is_rejected(tmp_path: Path) -> None:
    # The real Hopper vector answers NVIDIA's own nonce, not the one derived from ours:
    # the relay/replay defence names exactly that check; the rest of the GPU chain passes.
    verdict = verify(tmp_path, gpu_evidence=gpu_part())
    gpu_checks = {c.name: c.status for c in verdict.checks if c.name.startswith("gpu.")}
    assert gpu_checks["gpu.nvidia.nonce"] == "failed"
    assert gpu_checks["gpu.nvidia.signature"] == "passed"
    assert gpu_checks["gpu.nvidia.chain.root_pinned"] == "passed"
    assert gpu_checks["gpu.nvidia.cc_mode"] == "not_checked"
    assert [c.name for c in verdict.failed] == ["gpu.nvidia.nonce"]
    assert len(verdict.claims["gpu_id"]) == 64


def test_gpu_nonce_is_derived_from_the_cpu_nonce() -> None:
    a, b = b"\1" * 32, b"\2" * 32
    assert nvidia.gpu_nonce(a) == nvidia.gpu_nonce(a) != nvidia.gpu_nonce(b)
    assert nvidia.gpu_nonce(a) != a


@pytest.mark.parametrize(
    ("gpu", "message"),
    [
        ({"report": "zz", "certificates": []}, "gpu_evidence.report is not hex"),
        ({"report": "00"}, "gpu_evidence.certificates"),
        ({"report": "00", "certificates": [], "extra": 1}, "gpu_evidence.extra"),
    ],
)
def test_malformed_gpu_evidence_gets_a_typed_error(
    tmp_path: Path, gpu: dict[str, object], message: str
) -> None:
    with pytest.raises(evidence.EvidenceInvalid, match=message):
        verify(tmp_path, gpu_evidence=gpu)


def test_tdx_verdict_names_the_platform_by_its_pck_key() -> None:
    from . import test_tdx

    doc = evidence.EvidenceDocument.parse(
        {
            "tee": "tdx",
            "nonce": base64.b64encode(b"\0" * 32).decode(),
            "evidence": base64.b64encode(test_tdx.QUOTE).decode(),
            "certificates": [],
            "enclave_keys": {"hpke": "", "signing": ""},
            "produced_at": "2025-06-01T00:00:00Z",
        }
    )
    verdict = evidence.verify_document(doc, now=test_tdx.NOW)
    assert len(verdict.claims["chip_id"]) == 64
