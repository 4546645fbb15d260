"""The pool an agent serves (TEEROUTE_AGENT_POOL) is bound into its evidence, beside its keys,
on a real agent process: a verifier recomputes report_data from the document's `pool`, so the
pool cannot be swapped, dropped or added after the TEE signed, and a verifier expecting one
pool refuses evidence of another (`pool.binding`). The agent takes secret releases only for
that pool, and none when it serves no pool."""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from teeroute.attestation import evidence
from teeroute.attestation.policy import Policy
from teeroute.attestation.verdict import Verdict
from teeroute.sealing import envelope, secrets

from .sealed_client import agent_process, enclave_keys
from .test_agent import chip_dir  # noqa: F401 - a fixture, used by name
from .test_agent_proxy import free_port
from .test_secrets import OPERATOR, PINNED, POOL

OTHER_POOL = "team-b/relay"


def document(agent: str) -> dict[str, Any]:
    nonce = base64.b64encode(os.urandom(32)).decode()
    answer = httpx.post(f"{agent}/v1/attestation", json={"nonce": nonce}, timeout=10)
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def verdict(doc: dict[str, Any], chips: Path, expected_pool: str | None = None) -> Verdict:
    return evidence.verify_document(
        evidence.EvidenceDocument.parse(doc),
        now=dt.datetime.now(dt.UTC),
        policy=Policy(allowed_tee=frozenset({"simulated"})),
        trust=evidence.Trust((chips / "root.crt").read_bytes()),
        expected_pool=expected_pool,
    )


def failed(doc: dict[str, Any], chips: Path, expected_pool: str | None = None) -> list[str]:
    return [c.name for c in verdict(doc, chips, expected_pool).failed]


def test_the_evidence_binds_the_pool_the_agent_serves(
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    with agent_process(chip_dir, "", tmp_path / "pool.log", pool=POOL) as agent:
        bound = document(agent)
    with agent_process(chip_dir, "", tmp_path / "none.log") as agent:
        unbound = document(agent)
    assert bound["pool"] == POOL and "pool" not in unbound
    assert failed(bound, chip_dir) == [] and failed(bound, chip_dir, POOL) == []
    assert verdict(bound, chip_dir, POOL).status_of("pool.binding") == "passed"
    assert failed(unbound, chip_dir) == []  # a client may verify an enclave serving no pool
    swapped = {**bound, "pool": OTHER_POOL}
    dropped = {k: v for k, v in bound.items() if k != "pool"}
    added = {**unbound, "pool": POOL}
    assert failed(swapped, chip_dir, OTHER_POOL) == ["binding.report_data"]
    assert failed(dropped, chip_dir) == ["binding.report_data"]
    assert failed(added, chip_dir, POOL) == ["binding.report_data"]


@pytest.mark.parametrize(
    ("served", "detail"),
    [
        (POOL, f"the enclave serves {POOL}, not {OTHER_POOL}"),
        (None, f"the enclave serves no pool (expected {OTHER_POOL})"),
    ],
)
def test_a_verifier_expecting_another_pool_refuses_the_evidence_by_name(
    served: str | None,
    detail: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    settings = {"pool": served} if served else {}
    with agent_process(chip_dir, "", tmp_path / "agent.log", **settings) as agent:
        doc = document(agent)
    (check,) = verdict(doc, chip_dir, OTHER_POOL).failed
    assert (check.name, check.detail) == ("pool.binding", detail)


@pytest.mark.parametrize("pool", ["Team-A/relay", "team-a", "team-a/relay/x", "a/" + "b" * 254])
def test_the_agent_refuses_to_start_with_a_malformed_pool(pool: str, chip_dir: Path) -> None:  # noqa: F811
    env = {
        **os.environ,
        "TEEROUTE_TEE": "simulated",
        "NODE_NAME": "node-a",
        "TEEROUTE_SIMULATED_DIR": str(chip_dir),
        "TEEROUTE_AGENT_PORT": str(free_port()),  # were it to start, on a port of its own
        "TEEROUTE_AGENT_POOL": pool,
    }
    done = subprocess.run(
        [sys.executable, "-m", "teeroute_enclave"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "invalid settings (agent_pool)" in done.stderr


def post_release(agent: str, pool: str) -> httpx.Response:
    keys = enclave_keys(agent)
    body = secrets.seal_secrets(keys.hpke, pool, {"hf-token": "hf_x"}, OPERATOR, time.time_ns())
    return httpx.post(
        f"{agent}/v1/secrets",
        content=body,
        headers={"Content-Type": envelope.SEALED_CONTENT_TYPE},
        timeout=10,
    )


def test_the_agent_takes_releases_for_its_own_pool_only(
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    with agent_process(chip_dir, "", tmp_path / "agent.log", **PINNED) as agent:
        other = post_release(agent, OTHER_POOL)
        own = post_release(agent, POOL)
    unpinned = {k: v for k, v in PINNED.items() if k != "pool"}
    with agent_process(chip_dir, "", tmp_path / "none.log", **unpinned) as agent:
        poolless = post_release(agent, POOL)
    assert (other.status_code, other.json()["error"]["type"]) == (403, "release_refused")
    assert other.json()["error"]["message"].startswith("pool.binding: released for 'team-b/relay'")
    assert own.status_code == 204
    assert (poolless.status_code, poolless.json()["error"]["type"]) == (
        403,
        "secret_release_disabled",
    )
    assert "TEEROUTE_AGENT_POOL" in poolless.json()["error"]["message"]
