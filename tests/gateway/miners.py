"""Real confidential miners for the gateway's sealed-mode tests: the enclave agent on the
simulated TEE in front of an engine simulator, both real processes on loopback, and the lease
an operator would write after verifying the agent's evidence (with its attested keys). The
agents pin the tests' gateway key, which the gateways of `procs.py` hold."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from teeroute.attestation import simulated
from teeroute.attestation.evidence import EvidenceDocument, Trust, verify_document
from teeroute.attestation.policy import Policy
from tests import gateway_key

from .procs import Proc, free_port, started

NODE = "node-a"


def chip_dir(directory: Path) -> Path:
    """A simulated TEE: a root CA and one chip key, as the sandbox hands them to nodes."""
    return simulated.write_chip_dir(directory, NODE, dt.datetime.now(dt.UTC))


@contextmanager
def agent(chips: Path, engine_url: str, log: Path, **env: str) -> Iterator[Proc]:
    port = free_port()
    settings = {
        "TEEROUTE_TEE": "simulated",
        "NODE_NAME": NODE,
        "TEEROUTE_SIMULATED_DIR": str(chips),
        "TEEROUTE_AGENT_PORT": str(port),
        "TEEROUTE_ENGINE_URL": engine_url,
        **gateway_key.PINNED,
        **env,
    }
    with started([sys.executable, "-m", "teeroute_enclave"], port, log, "/healthz", settings) as p:
        yield p


def verified_lease(
    name: str, agent_url: str, chips: Path, expires_in_s: float = 600
) -> dict[str, Any]:
    """What the operator's sweeper writes for an endpoint whose evidence verified: challenge
    the agent with a fresh nonce, verify the document, publish its keys."""
    nonce = os.urandom(32)
    raw = httpx.post(
        agent_url + "/v1/attestation", json={"nonce": base64.b64encode(nonce).decode()}, timeout=10
    ).json()
    doc = EvidenceDocument.parse(raw)
    assert base64.b64decode(doc.nonce) == nonce  # verify_document checks the binding to it
    now = dt.datetime.now(dt.UTC)
    verdict = verify_document(
        doc,
        now=now,
        policy=Policy(allowed_tee=frozenset({"simulated"}), debug_forbidden=True),
        trust=Trust(simulated_root_pem=(chips / "root.crt").read_bytes()),
        issued_at=now,
    )
    assert verdict.ok, verdict
    hpke = base64.b64decode(doc.enclave_keys.hpke)
    signing = base64.b64decode(doc.enclave_keys.signing)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "name": name,
        "url": agent_url,
        "attestedAt": now.strftime(fmt),
        "expiresAt": (now + dt.timedelta(seconds=expires_in_s)).strftime(fmt),
        "tee": "simulated",
        "measurement": str(verdict.claims.get("measurement", "")),
        "hpkeKeySha256": hashlib.sha256(hpke).hexdigest(),
        "signingKeySha256": hashlib.sha256(signing).hexdigest(),
        "hpkePublicKey": doc.enclave_keys.hpke,
        "signingPublicKey": doc.enclave_keys.signing,
    }
