"""The gateway keys an agent pins (TEEROUTE_AGENT_GATEWAY_KEYS) are bound into its evidence,
on a real agent process: the document lists them (`enclave_keys.gateway`, omitted when none)
and a verifier recomputes report_data from that list, so no key can be swapped, dropped or
added after the TEE signed; a verifier expecting a set refuses any other (`gateway.keys`).
The list is read strictly: a malformed one is a typed `evidence.document` error."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.attestation import evidence
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.policy import Policy
from teeroute.attestation.verdict import Verdict
from tests import gateway_key

from .sealed_client import agent_process
from .test_agent import chip_dir  # noqa: F401 - a fixture, used by name
from .test_pool_binding import document

OTHER = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
THIRD = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def verdict(doc: dict[str, Any], chips: Path, expected: frozenset[bytes] | None = None) -> Verdict:
    return evidence.verify_document(
        evidence.EvidenceDocument.parse(doc),
        now=dt.datetime.now(dt.UTC),
        policy=Policy(allowed_tee=frozenset({"simulated"})),
        trust=evidence.Trust((chips / "root.crt").read_bytes()),
        expected_gateway_keys=expected,
    )


def failed(doc: dict[str, Any], chips: Path, expected: frozenset[bytes] | None = None) -> list[str]:
    return [c.name for c in verdict(doc, chips, expected).failed]


def with_gateway(doc: dict[str, Any], keys: list[str] | None) -> dict[str, Any]:
    """`doc` with its `enclave_keys.gateway` replaced (None: removed)."""
    listed = {k: v for k, v in doc["enclave_keys"].items() if k != "gateway"}
    if keys is not None:
        listed["gateway"] = keys
    return {**doc, "enclave_keys": listed}


@pytest.fixture(scope="module")
def two_keys(chip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: F811
    """The document of an agent pinning the tests' gateway key and OTHER (given in reverse
    order, and one twice: the agent pins a set)."""
    pinned = ",".join([b64(OTHER), gateway_key.PUBLIC_B64, b64(OTHER)])
    log = tmp_path_factory.mktemp("agent") / "agent.log"
    with agent_process(chip_dir, "", log, gateway_keys=pinned) as agent:
        return document(agent)


@pytest.fixture(scope="module")
def no_key(chip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: F811
    log = tmp_path_factory.mktemp("agent") / "agent.log"
    with agent_process(chip_dir, "", log, gateway_keys="") as agent:
        return document(agent)


def test_the_evidence_lists_and_binds_the_pinned_gateway_keys(
    two_keys: dict[str, Any],
    no_key: dict[str, Any],
    chip_dir: Path,  # noqa: F811 - the imported fixture
) -> None:
    # listed in the order they are bound: sorted as raw bytes (not as base64 text)
    expected = [b64(k) for k in sorted([OTHER, gateway_key.PUBLIC])]
    assert two_keys["enclave_keys"]["gateway"] == expected
    assert "gateway" not in no_key["enclave_keys"]
    assert failed(two_keys, chip_dir) == [] and failed(no_key, chip_dir) == []
    both = frozenset({OTHER, gateway_key.PUBLIC})
    assert verdict(two_keys, chip_dir, both).status_of("gateway.keys") == "passed"
    assert verdict(no_key, chip_dir, frozenset()).status_of("gateway.keys") == "passed"


@pytest.mark.parametrize(
    ("edit", "listed"),
    [
        ("swapped", [b64(THIRD), gateway_key.PUBLIC_B64]),
        ("dropped", [gateway_key.PUBLIC_B64]),
        ("added", [b64(OTHER), b64(THIRD), gateway_key.PUBLIC_B64]),
        ("all-removed", None),
    ],
)
def test_editing_the_listed_gateway_keys_breaks_the_binding(
    edit: str,
    listed: list[str] | None,
    two_keys: dict[str, Any],
    chip_dir: Path,  # noqa: F811 - the imported fixture
) -> None:
    assert failed(with_gateway(two_keys, listed), chip_dir) == ["binding.report_data"], edit


def test_adding_a_gateway_key_to_an_enclave_pinning_none_breaks_the_binding(
    no_key: dict[str, Any],
    chip_dir: Path,  # noqa: F811 - the imported fixture
) -> None:
    added = with_gateway(no_key, [gateway_key.PUBLIC_B64])
    expected = frozenset({gateway_key.PUBLIC})
    assert failed(added, chip_dir, expected) == ["binding.report_data"]


def test_the_order_of_the_listed_keys_does_not_count(
    two_keys: dict[str, Any],
    chip_dir: Path,  # noqa: F811 - the imported fixture
) -> None:
    reordered = with_gateway(two_keys, list(reversed(two_keys["enclave_keys"]["gateway"])))
    assert failed(reordered, chip_dir) == []


def test_a_verifier_expecting_other_gateway_keys_names_them_by_hash_only(
    two_keys: dict[str, Any],
    chip_dir: Path,  # noqa: F811 - the imported fixture
) -> None:
    (check,) = verdict(two_keys, chip_dir, frozenset({gateway_key.PUBLIC, THIRD})).failed
    other, third = (hashlib.sha256(k).hexdigest()[:16] for k in (OTHER, THIRD))
    assert (check.name, check.detail) == (
        "gateway.keys",
        f"the enclave pins {other}, not expected; it lacks {third}",
    )
    assert b64(OTHER) not in check.detail and OTHER.hex() not in check.detail


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        ([], "enclave_keys.gateway: List should have at least 1 item"),
        ([b64(OTHER)] * 17, "enclave_keys.gateway: List should have at most 16 items"),
        (["not base64!"], "enclave_keys.gateway is not base64"),
        ([b64(OTHER[:31])], "enclave_keys.gateway: not an Ed25519 key"),
        ([b64(OTHER + b"x")], "enclave_keys.gateway: not an Ed25519 key"),
        (["A" * 65], "enclave_keys.gateway.0: String should have at most 64 characters"),
        ([b64(OTHER), b64(OTHER)], "enclave_keys.gateway lists a key twice"),
        ("one", "enclave_keys.gateway: Input should be a valid list"),
    ],
)
def test_a_malformed_gateway_key_list_is_a_typed_error(
    listed: Any,
    message: str,
    two_keys: dict[str, Any],
    chip_dir: Path,  # noqa: F811 - the imported fixture
) -> None:
    with pytest.raises(EvidenceInvalid) as caught:
        verdict(with_gateway(two_keys, listed), chip_dir, frozenset())
    assert caught.value.check == "evidence.document"
    assert message in str(caught.value)
