"""The attestation sweeper against real agents: simulated-TEE miner pods run as processes
(agent + engine simulator), the operator challenges them, and only attested, unexpired
endpoints appear in the pool's EndpointSlice."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from teeroute import admission
from teeroute.attestation.providers import code_measurement
from teeroute_enclave.__main__ import PACKAGE as AGENT
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import runner_ready, wait_for
from tests import gateway_key

from .cases import valid_pool
from .conftest import OperatorProcess, vendor

pytestmark = pytest.mark.sandbox

INTERVAL_S = 3
MAX_AGE_S = 12
API = "/apis/teeroute.dev/v1alpha1/namespaces"
Obj = dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def sweeping_operator(
    sandbox: Sandbox, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        sandbox, tmp_path_factory.mktemp("operator") / "operator.log", metrics_port=free_port()
    )
    process.start()
    yield process
    process.stop()


def attested_pool(name: str, replicas: int = 3) -> Obj:
    pool = valid_pool(name)
    pool["spec"]["replicas"] = replicas
    pool["spec"]["resources"] = {"cpu": "100m", "memory": "128Mi"}
    pool["spec"]["attestation"] = {
        "allowedMeasurements": [code_measurement(AGENT).hex()],
        "maxEvidenceAge": f"{MAX_AGE_S}s",
        "reattestationInterval": f"{INTERVAL_S}s",
    }
    return pool


def slice_of(kube: KubeRest, ns: str, pool: str) -> Obj | None:
    return kube.get_or_none(
        f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{admission.slice_name(pool)}"
    )


def listed(kube: KubeRest, ns: str, pool: str) -> set[str]:
    found = slice_of(kube, ns, pool)
    if found is None:
        return set()
    return {e.address for e in admission.admitted(found, dt.datetime.now(dt.UTC))}


def running_pods(kube: KubeRest, ns: str, pool: str) -> list[Obj]:
    pods: list[Obj] = kube.get(
        f"/api/v1/namespaces/{ns}/pods", labelSelector=f"teeroute.dev/pool={pool}"
    )["items"]
    return [p for p in pods if runner_ready(p) and not p["metadata"].get("deletionTimestamp")]


def exactly(n: int, pods: list[Obj]) -> list[Obj] | None:
    return pods if len(pods) == n else None


def start_pool(kube: KubeRest, ns: str, name: str, replicas: int) -> tuple[list[Obj], set[str]]:
    """Create an attested pool; wait until the runner runs its pods and all are listed."""
    kube.post(f"{API}/{ns}/minerpools", attested_pool(name, replicas))
    pods = wait_for(
        lambda: exactly(replicas, running_pods(kube, ns, name)),
        timeout_s=120,
        what=f"{replicas} miner pods run by the runner",
    )
    ips = {p["status"]["podIP"] for p in pods}
    wait_for(
        lambda: listed(kube, ns, name) == ips,
        timeout_s=60,
        what=f"the EndpointSlice to list the {replicas} attested pods",
    )
    return pods, ips


def status_of(kube: KubeRest, ns: str, pool: str) -> Obj:
    status: Obj = kube.get(f"{API}/{ns}/minerpools/{pool}").get("status") or {}
    return status


def override_file(sandbox: Sandbox, pod: Obj) -> Path:
    """The agent's /tmp (an emptyDir) as the runner keeps it on the host."""
    return (
        sandbox.layout.pods
        / pod["metadata"]["uid"]
        / "volumes"
        / "tmp"
        / "teeroute-simulated-measurement"
    )


def events(kube: KubeRest, ns: str, reason: str) -> list[Obj]:
    items: list[Obj] = kube.get(f"/api/v1/namespaces/{ns}/events")["items"]
    return [e for e in items if e.get("reason") == reason]


def test_three_simulated_miners_are_attested_and_listed(
    kube: KubeRest, namespace: str, sweeping_operator: OperatorProcess
) -> None:
    pods, _ = start_pool(kube, namespace, "trio", 3)
    wait_for(
        lambda: status_of(kube, namespace, "trio").get("attestedReplicas") == 3,
        what="attestedReplicas 3/3",
    )
    pod = kube.get(f"/api/v1/namespaces/{namespace}/pods/{pods[0]['metadata']['name']}")
    notes = pod["metadata"]["annotations"]
    assert notes[admission.TEE] == "simulated"
    assert notes[admission.MEASUREMENT] == code_measurement(AGENT).hex()
    assert len(notes[admission.CHIP_ID]) == 128
    assert len(notes[admission.HPKE_KEY]) == len(notes[admission.SIGNING_KEY]) == 64
    expires = admission.parse_time(notes[admission.EXPIRES_AT])
    attested = admission.parse_time(notes[admission.ATTESTED_AT])
    assert expires is not None and attested is not None
    assert dt.timedelta(0) < expires - attested <= dt.timedelta(seconds=MAX_AGE_S)
    # Events are posted apart from the verdicts (kopf's queue): wait for them.
    wait_for(lambda: events(kube, namespace, "Attested"), what="the Attested Event")

    body = urllib.request.urlopen(
        f"http://127.0.0.1:{sweeping_operator.metrics_port}/metrics", timeout=5
    ).read()
    assert b'teeroute_attested_endpoints{namespace="' + namespace.encode() in body
    assert b'outcome="verified"' in body


def test_bad_evidence_leaves_at_once_and_returns_when_fixed(
    kube: KubeRest, namespace: str, sandbox: Sandbox, sweeping_operator: OperatorProcess
) -> None:
    pods, ips = start_pool(kube, namespace, "flaky", 3)

    victim = pods[0]
    bad = override_file(sandbox, victim)
    bad.write_text("ab" * 48)  # the agent now reports a measurement the policy does not allow
    try:
        wait_for(
            lambda: listed(kube, namespace, "flaky") == ips - {victim["status"]["podIP"]},
            timeout_s=INTERVAL_S + 5,
            what="the miner with bad evidence to leave the EndpointSlice",
        )
        status = wait_for(
            lambda: (
                (found := status_of(kube, namespace, "flaky")).get("lastAttestationFailure")
                and found.get("attestedReplicas") == 2
                and found
            ),
            what="the pool to report why, with 2 attested",
        )
        assert "measurement" in status["lastAttestationFailure"]
        wait_for(
            lambda: events(kube, namespace, "AttestationFailed"), what="the AttestationFailed Event"
        )
    finally:
        bad.unlink()
    wait_for(
        lambda: listed(kube, namespace, "flaky") == ips,
        timeout_s=INTERVAL_S + 5,
        what="the fixed miner to return",
    )


def test_when_the_operator_stops_endpoints_drop_out_as_evidence_expires(
    kube: KubeRest, namespace: str, sweeping_operator: OperatorProcess
) -> None:
    _, ips = start_pool(kube, namespace, "orphaned", 2)

    sweeping_operator.kill()
    try:
        stopped_at = dt.datetime.now(dt.UTC)
        raw = slice_of(kube, namespace, "orphaned")
        assert raw is not None
        deadline = max(e.expires_at for e in admission.admitted(raw, stopped_at))
        assert deadline <= stopped_at + dt.timedelta(seconds=MAX_AGE_S)
        # Nobody refreshes the slice any more, yet what it admits runs out on its own.
        wait_for(
            lambda: not listed(kube, namespace, "orphaned"),
            timeout_s=MAX_AGE_S + 5,
            what="the endpoints to drop out at expiry",
        )
        assert slice_of(kube, namespace, "orphaned") == raw  # untouched: the reader failed closed
        assert dt.datetime.now(dt.UTC) >= deadline
    finally:
        sweeping_operator.start()
    wait_for(
        lambda: listed(kube, namespace, "orphaned") == ips,
        timeout_s=60,
        what="the restarted operator to re-admit them",
    )


@contextmanager
def agent_outside(sandbox: Sandbox, directory: Path, **settings: str) -> Iterator[str]:
    """A real enclave agent outside the cluster, as a remote miner would run it: simulated
    TEE with one of the sandbox vendor's chips, on loopback of the sandbox's namespace, with
    its own `directory`; `settings` are extra environment variables. Yields its URL."""
    chips = vendor(sandbox).chip_files()
    node = next(iter(chips))[: -len(".key")]
    for suffix in (".key", ".crt"):
        (directory / f"{node}{suffix}").write_bytes(chips[f"{node}{suffix}"])
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "TEEROUTE_AGENT_RELEASE_KEY"},
        "TEEROUTE_TEE": "simulated",
        "TEEROUTE_AGENT_PORT": str(port),
        "TEEROUTE_SIMULATED_DIR": str(directory),
        "TEEROUTE_SIMULATED_OVERRIDE_FILE": str(directory / "override"),
        "NODE_NAME": node,
        # the gateway keys the operator is configured with (conftest): a remote miner pins
        # exactly those, or the operator rejects its enclave (check gateway.keys)
        **gateway_key.PINNED,
        **settings,
    }
    proc = subprocess.Popen([sys.executable, "-m", "teeroute_enclave"], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: urllib.request.urlopen(f"{url}/healthz", timeout=1), what="the agent")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def external_agent(sandbox: Sandbox, namespace: str, tmp_path: Path) -> Iterator[str]:
    """A remote miner's agent serving the pool `remote` of the test's namespace."""
    with agent_outside(sandbox, tmp_path, TEEROUTE_AGENT_POOL=f"{namespace}/remote") as url:
        yield url


def test_external_endpoints_are_leased_in_the_pool_status(
    kube: KubeRest, namespace: str, sweeping_operator: OperatorProcess, external_agent: str
) -> None:
    pool = attested_pool("remote")
    for key in ("replicas", "images", "placement", "resources"):
        del pool["spec"][key]
    pool["spec"]["endpoints"] = [
        {"name": "live", "url": external_agent},
        {"name": "dead", "url": f"http://127.0.0.1:{free_port()}"},
    ]
    kube.post(f"{API}/{namespace}/minerpools", pool)

    def admitted_names() -> set[str]:
        now = dt.datetime.now(dt.UTC)
        return {
            e.name for e in admission.admitted_external(status_of(kube, namespace, "remote"), now)
        }

    wait_for(lambda: admitted_names() == {"live"}, timeout_s=30, what="the live endpoint leased")
    status = wait_for(
        lambda: (s := status_of(kube, namespace, "remote")).get("attestedReplicas") == 1 and s,
        what="attestedReplicas 1",
    )
    dead = next(e for e in status["endpoints"] if e["name"] == "dead")
    assert dead["expiresAt"] == "" and dead["failure"].startswith("unreachable")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["message"] == "1/2 external endpoints attested"
    live = next(e for e in status["endpoints"] if e["name"] == "live")
    assert live["measurement"] == code_measurement(AGENT).hex() and len(live["chipId"]) == 128


def test_one_enclave_listed_twice_is_admitted_once(
    kube: KubeRest, namespace: str, sweeping_operator: OperatorProcess, external_agent: str
) -> None:
    """Two endpoint names, one enclave behind both (a relay, or a URL listed twice): its key
    holds one lease; the other endpoint is refused by name, sweep after sweep."""
    pool = attested_pool("remote")
    for key in ("replicas", "images", "placement", "resources"):
        del pool["spec"][key]
    pool["spec"]["endpoints"] = [
        {"name": "first", "url": external_agent},
        {"name": "again", "url": external_agent + "/"},
    ]
    kube.post(f"{API}/{namespace}/minerpools", pool)

    def refused(status: Obj) -> list[str]:
        return [
            e["name"]
            for e in status.get("endpoints") or []
            if "admission.duplicate-key" in e.get("failure", "")
        ]

    status = wait_for(
        lambda: (
            (s := status_of(kube, namespace, "remote")).get("attestedReplicas") == 1
            and len(refused(s)) == 1
            and s
        ),
        timeout_s=30,
        what="one endpoint admitted, the other refused as a duplicate",
    )
    first_refused = refused(status)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2 * INTERVAL_S)
    status = wait_for(
        lambda: dt.datetime.now(dt.UTC) > later and status_of(kube, namespace, "remote"),
        timeout_s=30,
        what="two more sweeps",
    )
    assert status["attestedReplicas"] == 1 and refused(status) == first_refused
