"""The confidential miner under the benchmark: the enclave agent (`python -m teeroute_enclave`)
on the simulated TEE, in front of the engine simulator, and the lease an operator's sweeper
would write for it after verifying its evidence against a fresh nonce (with its attested HPKE
and signing keys), which goes into the gateway's file config."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

from gatewaybench.procs import BenchError, Fleet, Service, free_port, wait_ready

from teeroute.attestation import simulated
from teeroute.attestation.evidence import EvidenceDocument, Trust, verify_document
from teeroute.attestation.policy import Policy

NODE = "node-a"
AGENT_START_TIMEOUT_S = 60
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def chip_dir(directory: Path) -> Path:
    """A simulated TEE: a root CA and one chip key, as the sandbox hands them to nodes."""
    return simulated.write_chip_dir(directory, NODE, dt.datetime.now(dt.UTC))


def start_agent(
    fleet: Fleet, chips: Path, engine_url: str, core: int | None, gateway_keys: str = ""
) -> tuple[Service, str]:
    """The agent, answering the gateway whose public key(s) `gateway_keys` names."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEEROUTE_")}
    env |= {
        "TEEROUTE_TEE": "simulated",
        "NODE_NAME": NODE,
        "TEEROUTE_SIMULATED_DIR": str(chips),
        "TEEROUTE_AGENT_PORT": str(port),
        "TEEROUTE_ENGINE_URL": engine_url,
        "TEEROUTE_AGENT_GATEWAY_KEYS": gateway_keys,
    }
    service = fleet.start("agent", [sys.executable, "-m", "teeroute_enclave"], core=core, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(service, url + "/healthz", AGENT_START_TIMEOUT_S)
    return service, url


def verified_lease(agent_url: str, chips: Path, valid_for: dt.timedelta) -> dict[str, Any]:
    """Challenge the agent with a fresh nonce, verify its evidence (simulated root, policy:
    simulated TEE, no debug) and publish its keys, as the operator's sweeper does."""
    nonce = os.urandom(32)
    request = urllib.request.Request(  # noqa: S310 - loopback
        agent_url + "/v1/attestation",
        data=json.dumps({"nonce": base64.b64encode(nonce).decode()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        doc = EvidenceDocument.parse(json.loads(answer.read()))
    now = dt.datetime.now(dt.UTC)
    verdict = verify_document(
        doc,
        now=now,
        policy=Policy(allowed_tee=frozenset({"simulated"}), debug_forbidden=True),
        trust=Trust(simulated_root_pem=(chips / "root.crt").read_bytes()),
        issued_at=now,
    )
    if base64.b64decode(doc.nonce) != nonce or not verdict.ok:
        raise BenchError(f"the agent's evidence did not verify: {verdict}")
    hpke = base64.b64decode(doc.enclave_keys.hpke)
    signing = base64.b64decode(doc.enclave_keys.signing)
    return {
        "url": agent_url,
        "attestedAt": now.strftime(TIME_FORMAT),
        "expiresAt": (now + valid_for).strftime(TIME_FORMAT),
        "tee": "simulated",
        "measurement": str(verdict.claims.get("measurement", "")),
        "hpkeKeySha256": hashlib.sha256(hpke).hexdigest(),
        "signingKeySha256": hashlib.sha256(signing).hexdigest(),
        "hpkePublicKey": doc.enclave_keys.hpke,
        "signingPublicKey": doc.enclave_keys.signing,
    }
