"""Attestation-gated secret release against the sandbox: miner pods run as real processes,
the operator (a real process) challenges them and releases the pool's secrets to the attested
enclaves only; the raw attested public keys are published beside their hashes.

The relay test is the whole story: a relay pool in front of an engine simulator that demands
an API key (a closed-model provider), the key in a Secret. The agent can serve only once the
operator released the key to it, and the key shows up nowhere on the way.

Releases are signed by the operator's release key, which the agents of its pods pin; an
enclave pinning another key, or none, gets nothing and is not admitted."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from teeroute import admission
from teeroute_operator.release import RELEASE_TO
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import wait_for
from tests import gateway_key

from .conftest import OperatorProcess
from .test_attestation import (
    API,
    agent_outside,
    attested_pool,
    events,
    free_port,
    listed,
    running_pods,
    start_pool,
    status_of,
    sweeping_operator,  # noqa: F401 - a fixture, used by name
)

pytestmark = pytest.mark.sandbox

Obj = dict[str, Any]
PROVIDER_KEY = "sk-closed-provider-2c8e61f0a9d4b7e3"
OTHER_VALUE = "another-secret-value-5d0b7c1e"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # what valid_pool serves
KEY_VARIABLE = "PROVIDER_API_KEY"


def secret(name: str, data: dict[str, str], release_to: str = "") -> Obj:
    """A Secret offered to the pools named in `release_to` (comma-separated; "": none)."""
    annotations = {RELEASE_TO: release_to} if release_to else {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "annotations": annotations},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def secret_ref(name: str, secret_name: str, key: str) -> Obj:
    return {"name": name, "secretKeyRef": {"name": secret_name, "key": key}}


@pytest.fixture
def provider(sandbox: Sandbox, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A closed-model provider: the engine simulator demanding an API key, on the sandbox's
    own address (pods reach it through their default route; nothing leaves the machine)."""
    host = sandbox.settings.advertise_address
    port = free_port()
    log = tmp_path / "provider.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEEROUTE_ENGINE_")}
    env[KEY_VARIABLE] = PROVIDER_KEY
    argv = [sys.executable, "-m", "teeroute_engine_sim", "--model", MODEL, "--host", host]
    argv += ["--port", str(port), "--api-key-env", KEY_VARIABLE]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://{host}:{port}"
    try:
        wait_for(lambda: healthy(f"{url}/health"), what="the provider")
        yield url, log
    finally:
        proc.terminate()
        proc.wait(10)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def chat(pod_ip: str) -> httpx.Response:
    """A completion asked of the pod's agent as the gateway asks (the operator's agents pin
    the tests' gateway key)."""
    agent = f"http://{pod_ip}:8443"
    return httpx.post(
        f"{agent}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        auth=gateway_key.signed_for(agent),
        timeout=10,
    )


def release_failure(kube: KubeRest, pod_path: str) -> str:
    """The pod's failure once it is the secret release's.

    kwok marks a pod Ready before the runner has started its agent, so the operator's first
    challenge may find nothing listening and record `unreachable: …` for a moment; that is
    a true verdict, just not the one under test.
    """

    def failure() -> str | None:
        found = kube.get(pod_path)["metadata"].get("annotations", {}).get(admission.FAILURE)
        return found if found and found.startswith("secrets.release: ") else None

    return wait_for(failure, timeout_s=30, what="the release to fail")


def relay_pool(name: str, provider_url: str, secrets: list[Obj]) -> Obj:
    pool = attested_pool(name, replicas=1)
    pool["spec"]["images"] = {"agent": "teeroute.dev/agent:0.1.0"}
    pool["spec"]["relay"] = {"url": provider_url}
    pool["spec"]["secrets"] = secrets
    return pool


def everything_said(kube: KubeRest, ns: str, pool: str, operator: OperatorProcess) -> str:
    """Where a leaked value could show: the operator's log and metrics, the namespace's
    Events, the miner pods (annotations and all) and the pool (spec and status)."""
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5
    ).read()
    pods = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"teeroute.dev/pool={pool}")
    return "\n".join(
        [
            operator.log.read_text(errors="replace"),
            metrics.decode(),
            json.dumps(kube.get(f"/api/v1/namespaces/{ns}/events")["items"]),
            json.dumps(pods["items"]),
            json.dumps(kube.get(f"{API}/{ns}/minerpools/{pool}")),
        ]
    )


def assert_never_said(text: str, *values: str) -> None:
    for value in values:
        assert value not in text
        assert base64.b64encode(value.encode()).decode() not in text


def test_a_relay_serves_only_once_its_api_key_was_released(
    kube: KubeRest,
    namespace: str,
    sweeping_operator: OperatorProcess,  # noqa: F811
    provider: tuple[str, Path],
) -> None:
    url, provider_log = provider
    ref = secret_ref("engine-api-key", "provider", "token")
    kube.post(f"{API}/{namespace}/minerpools", relay_pool("relay", url, [ref]))
    (pod,) = wait_for(
        lambda: (p := running_pods(kube, namespace, "relay")) and len(p) == 1 and p,
        timeout_s=120,
        what="the relay's pod run by the runner",
    )
    assert [c["name"] for c in pod["spec"]["containers"]] == ["agent"]
    agent_env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    pinned = base64.b64encode(sweeping_operator.release_public).decode()
    assert agent_env["TEEROUTE_AGENT_RELEASE_KEY"] == pinned
    ip = pod["status"]["podIP"]

    # No Secret yet: the evidence verifies, but the enclave cannot get its key, so it stays
    # out, and the provider refuses what the agent forwards without one.
    failure = release_failure(
        kube, f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}"
    )
    assert '"provider" not found' in failure
    assert listed(kube, namespace, "relay") == set()
    refused = chat(ip)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"

    kube.post(
        f"/api/v1/namespaces/{namespace}/secrets",
        secret("provider", {"token": PROVIDER_KEY}, release_to="relay"),
    )
    wait_for(
        lambda: listed(kube, namespace, "relay") == {ip},
        timeout_s=60,  # the next sweep (3 s) releases it; 30 s was once too short under load
        what="the relay admitted once its key was released",
    )
    answer = chat(ip)
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] <= 4
    notes = kube.get(f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}")["metadata"][
        "annotations"
    ]
    assert len(notes[admission.SECRETS_RELEASED]) == 64
    assert admission.FAILURE not in notes
    # Events are posted apart from the verdicts (kopf's queue): wait for them.
    wait_for(
        lambda: events(kube, namespace, "SecretReleaseFailed"),
        what="the Event of the failed release",
    )
    released = wait_for(
        lambda: events(kube, namespace, "SecretsReleased"), what="the Event of the release"
    )[0]
    assert "engine-api-key" in released["message"]

    said = everything_said(kube, namespace, "relay", sweeping_operator)
    assert_never_said(said + provider_log.read_text(errors="replace"), PROVIDER_KEY)


def test_a_missing_secret_keeps_the_miner_out_and_no_value_shows(
    kube: KubeRest,
    namespace: str,
    sweeping_operator: OperatorProcess,  # noqa: F811
) -> None:
    kube.post(
        f"/api/v1/namespaces/{namespace}/secrets",
        secret("present", {"v": OTHER_VALUE}, release_to="withheld"),
    )
    pool = attested_pool("withheld", replicas=1)
    pool["spec"]["secrets"] = [
        secret_ref("present", "present", "v"),
        secret_ref("absent", "absent", "v"),
    ]
    kube.post(f"{API}/{namespace}/minerpools", pool)
    (pod,) = wait_for(
        lambda: (p := running_pods(kube, namespace, "withheld")) and len(p) == 1 and p,
        timeout_s=120,
        what="the miner pod run by the runner",
    )
    path = f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}"
    failure = release_failure(kube, path)
    assert failure == 'secrets.release: secrets.found: Secret "absent" not found (secret absent)'
    notes = kube.get(path)["metadata"]["annotations"]
    assert admission.EXPIRES_AT not in notes and admission.SECRETS_RELEASED not in notes
    assert listed(kube, namespace, "withheld") == set()
    (event,) = wait_for(
        lambda: events(kube, namespace, "SecretReleaseFailed"), what="the Event of the failure"
    )
    assert event["type"] == "Warning" and '"absent"' in event["message"]
    status = wait_for(
        lambda: (
            (found := status_of(kube, namespace, "withheld"))
            and "secrets.release" in found.get("lastAttestationFailure", "")
            and found
        ),
        what="the pool to say why",
    )
    assert status.get("attestedReplicas") == 0
    said = everything_said(kube, namespace, "withheld", sweeping_operator)
    assert 'check="secrets.release"' in said  # the metric
    assert_never_said(said, OTHER_VALUE)


def test_pods_carry_the_raw_attested_keys_whose_hashes_are_published(
    kube: KubeRest,
    namespace: str,
    sweeping_operator: OperatorProcess,  # noqa: F811
) -> None:
    pods, _ = start_pool(kube, namespace, "keys", 1)
    notes = kube.get(f"/api/v1/namespaces/{namespace}/pods/{pods[0]['metadata']['name']}")[
        "metadata"
    ]["annotations"]
    hpke = base64.b64decode(notes[admission.HPKE_PUBLIC_KEY], validate=True)
    signing = base64.b64decode(notes[admission.SIGNING_PUBLIC_KEY], validate=True)
    assert len(hpke) == len(signing) == 32
    assert hashlib.sha256(hpke).hexdigest() == notes[admission.HPKE_KEY]
    assert hashlib.sha256(signing).hexdigest() == notes[admission.SIGNING_KEY]
    assert admission.SECRETS_RELEASED not in notes  # this pool has no secrets
    expires = admission.parse_time(notes[admission.EXPIRES_AT])
    assert expires is not None and expires > dt.datetime.now(dt.UTC)


def test_only_an_enclave_pinning_the_operators_release_key_gets_the_secrets(
    kube: KubeRest,
    namespace: str,
    sandbox: Sandbox,
    sweeping_operator: OperatorProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Three remote miners' agents: one pins the operator's release key, one another key (say,
    a host that wants to feed it secrets of its own), one none. All three evidence documents
    verify; only the first enclave gets the pool's secrets and is admitted."""
    kube.post(
        f"/api/v1/namespaces/{namespace}/secrets",
        secret("shared", {"v": OTHER_VALUE}, release_to="pinned"),
    )
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    pins = {
        "ours": {"TEEROUTE_AGENT_RELEASE_KEY": b64(sweeping_operator.release_public)},
        "other": {"TEEROUTE_AGENT_RELEASE_KEY": b64(other)},
        "none": {},
    }
    serving = {"TEEROUTE_AGENT_POOL": f"{namespace}/pinned"}  # the pool its evidence binds
    with ExitStack() as stack:
        urls = {}
        for name, settings in pins.items():
            (tmp_path / name).mkdir()
            urls[name] = stack.enter_context(
                agent_outside(sandbox, tmp_path / name, **settings, **serving)
            )
        pool = attested_pool("pinned")
        for key in ("replicas", "images", "placement", "resources"):
            del pool["spec"][key]
        pool["spec"]["endpoints"] = [{"name": n, "url": u} for n, u in urls.items()]
        pool["spec"]["secrets"] = [secret_ref("shared", "shared", "v")]
        kube.post(f"{API}/{namespace}/minerpools", pool)

        def entries() -> dict[str, Obj]:
            found = status_of(kube, namespace, "pinned").get("endpoints") or []
            return {e["name"]: e for e in found}

        wait_for(
            lambda: (
                (e := entries())
                and e.get("ours", {}).get("expiresAt")
                and e.get("other", {}).get("failure")
                and e.get("none", {}).get("failure")
            ),
            timeout_s=30,
            what="a verdict on each of the three endpoints",
        )
        now = dt.datetime.now(dt.UTC)
        status = status_of(kube, namespace, "pinned")
        assert {e.name for e in admission.admitted_external(status, now)} == {"ours"}
        found = entries()
        assert len(found["ours"]["secretsReleased"]) == 64 and not found["ours"]["failure"]
        for name in ("other", "none"):  # a secrets.release failure: the evidence verified
            assert found[name]["expiresAt"] == "" and found[name]["secretsReleased"] == ""
        assert found["other"]["failure"].startswith(
            "secrets.release: the enclave pins another release key (SHA-256 "
            f"{hashlib.sha256(other).hexdigest()[:16]}…"
        )
        assert found["none"]["failure"] == (
            "secrets.release: the enclave pins no release key "
            "(its agent lacks TEEROUTE_AGENT_RELEASE_KEY)"
        )

        # Events are posted apart from the status (kopf's queue): wait for them.
        def failed(prefix: str) -> bool:
            found = events(kube, namespace, "SecretReleaseFailed")
            return any(e["message"].startswith(prefix) for e in found)

        wait_for(lambda: failed("endpoint other: the enclave pins another"), what="other's Event")
        wait_for(lambda: failed("endpoint none: the enclave pins no release key"), what="none's")
        (released,) = wait_for(
            lambda: events(kube, namespace, "SecretsReleased"), what="the Event of the release"
        )
        assert released["message"].startswith("endpoint ours: released shared ")
        assert_never_said(
            everything_said(kube, namespace, "pinned", sweeping_operator), OTHER_VALUE
        )


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
