"""Forged admission (docs/threat-model.md): a cluster user bound to the built-in `edit`
ClusterRole in the miner's namespace tries every write it has to get an endpoint of its own
routed, or the pool's requests sealed to a key of its choosing. Real parts only: the
sandbox's apiserver and RBAC, the operator process, simulated-TEE miner pods run by the
runner, and a gateway process in cluster mode pinning the operator's key."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import http.server
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import x25519

from teeroute import admission, admission_record
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import wait_for
from tests import gateway_key

from ..gateway.procs import free_port, started
from .conftest import OperatorProcess
from .test_attestation import (
    API,
    running_pods,
    start_pool,
    sweeping_operator,  # noqa: F401 - a fixture, used by name
)

pytestmark = pytest.mark.sandbox

Obj = dict[str, Any]
MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # what valid_pool serves
PUBLIC_MODEL = "victim-model"
ATTACKER_HPKE = base64.b64encode(
    x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
).decode()


class Trap:
    """An HTTP server on the attacker's address that records every request it gets."""

    def __init__(self, address: str, port: int) -> None:
        hits: list[str] = []
        self.hits = hits
        self.address = address

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._hit()

            def do_POST(self) -> None:
                self._hit()

            def _hit(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Editor:
    """A real user of the apiserver: a ServiceAccount bound to the built-in `edit`
    ClusterRole in one namespace, speaking with its own token."""

    def __init__(self, kube: KubeRest, sandbox: Sandbox, namespace: str) -> None:
        kube.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "mallory"}},
        )
        kube.post(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "mallory-edit"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "edit",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "mallory", "namespace": namespace}],
            },
        )
        token = kube.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/mallory/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )["status"]["token"]
        cfg = yaml.safe_load(sandbox.kubeconfig.read_text())
        ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
        self.http = httpx.Client(
            base_url=kube.server,
            verify=ssl.create_default_context(cadata=ca.decode()),
            headers={"Authorization": f"Bearer {token}"},
            timeout=15,
        )
        self.tried: dict[str, int] = {}
        """What it tried -> the apiserver's status code."""

    def attempt(self, what: str, method: str, path: str, body: Obj, merge: bool = False) -> int:
        headers = {"Content-Type": "application/merge-patch+json"} if merge else {}
        answer = self.http.request(method, path, json=body, headers=headers)
        self.tried[what] = answer.status_code
        return answer.status_code


@pytest.fixture
def trap(sandbox: Sandbox) -> Iterator[Trap]:
    """On an address of the sandbox's own (the attacker's server, as far as routing goes)."""
    listener = Trap(sandbox.settings.advertise_address, 8443)
    yield listener
    listener.close()


@pytest.fixture
def cluster_gateway(
    sandbox: Sandbox,
    namespace: str,
    sweeping_operator: OperatorProcess,  # noqa: F811
    tmp_path: Path,
) -> Iterator[tuple[str, str]]:
    """A gateway in cluster mode (the admin's kubeconfig, this namespace), pinning the
    operator's key; yields its URL and an API key."""
    env = {
        "KUBECONFIG": str(sandbox.kubeconfig),
        "TEEROUTE_GATEWAY_LEDGER": f"sqlite:///{tmp_path / 'ledger.db'}",
        "TEEROUTE_GATEWAY_NAMESPACES": namespace,
        # the key the operator's agents pin (tests/operator/conftest.py)
        "TEEROUTE_GATEWAY_GATEWAY_KEY_FILE": str(
            gateway_key.write_pem(tmp_path / "gateway-key.pem")
        ),
        "TEEROUTE_GATEWAY_OPERATOR_KEY": base64.b64encode(
            sweeping_operator.release_public
        ).decode(),
    }
    key = _create_key(env)
    port = free_port()
    argv = [sys.executable, "-m", "teeroute.cli", "gateway", "serve", "--port", str(port)]
    with started(argv, port, tmp_path / "gateway.log", "/healthz", env) as proc:
        yield proc.url, key


def _create_key(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "teeroute.cli", "keys", "create", "--credit", "100"],
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TEEROUTE_")}, **env},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def routed(gateway: str) -> dict[str, str]:
    """What the gateway would route the model to: endpoint -> HPKE key fingerprint."""
    answer = httpx.get(f"{gateway}/v1/attestations", params={"model": PUBLIC_MODEL}, timeout=5)
    if answer.status_code != 200:
        return {}
    return {e["endpoint"]: e["hpke_key_sha256"] for e in answer.json()["data"]}


def chat(gateway: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": PUBLIC_MODEL,
            "messages": [{"role": "user", "content": "the secret plan"}],
            "max_tokens": 4,
        },
        timeout=20,
    )


def signed_keys(kube: KubeRest, ns: str, pool: str, operator_key: bytes) -> dict[str, str]:
    """Pod name -> HPKE key fingerprint, from the operator's signed records in the slice."""
    slice_ = kube.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{admission.slice_name(pool)}"
    )
    notes = slice_["metadata"].get("annotations") or {}
    tokens = admission_record.load_list(notes.get(admission_record.RECORDS_ANNOTATION, ""))
    records = admission_record.verify_all(tokens, operator_key, pool=f"{ns}/{pool}", warn=print)
    return {
        r.endpoint: hashlib.sha256(base64.b64decode(r.hpke_public_key)).hexdigest() for r in records
    }


def forge(editor: Editor, kube: KubeRest, ns: str, pod: Obj, trap: str) -> None:
    """Everything the editor can write to get in: a copy of a miner pod of its own, forged
    verdicts on the real pods, a chip re-admission, forged EndpointSlices."""
    pods = f"/api/v1/namespaces/{ns}/pods"
    forged_verdict = {
        admission.EXPIRES_AT: "2099-01-01T00:00:00Z",
        admission.ATTESTED_AT: "2026-01-01T00:00:00Z",
        admission.HPKE_PUBLIC_KEY: ATTACKER_HPKE,
        admission.HPKE_KEY: hashlib.sha256(base64.b64decode(ATTACKER_HPKE)).hexdigest(),
        admission.READMIT: "any",
    }
    twin = copy.deepcopy(pod)
    labels = {k: v for k, v in twin["metadata"]["labels"].items() if k != "pod-template-hash"}
    twin["metadata"] = {"name": "victim-twin", "labels": labels, "annotations": forged_verdict}
    twin.pop("status", None)
    editor.attempt("create a twin miner pod", "POST", pods, twin)
    for real in running_pods(kube, ns, "victim"):
        name = real["metadata"]["name"]
        patch = {"metadata": {"annotations": forged_verdict}}
        editor.attempt(f"forge {name}'s verdict", "PATCH", f"{pods}/{name}", patch, merge=True)
    slices = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
    notes = {
        admission.EXPIRY: f'{{"{trap}":"2099-01-01T00:00:00Z"}}',
        admission_record.RECORDS_ANNOTATION: '["forged.token"]',
    }
    entry = {"addresses": [trap], "conditions": {"ready": True}}
    extra = {"metadata": {"annotations": notes}, "endpoints": [entry]}
    path = f"{slices}/{admission.slice_name('victim')}"
    editor.attempt("patch the attested slice", "PATCH", path, extra, merge=True)
    own = admission.build_slice(
        namespace=ns, pool="victim", port=8443, endpoints=[], owner=None
    ) | {"endpoints": [entry]}
    own["metadata"] |= {"name": "victim-attested-2", "annotations": notes}
    editor.attempt("create a second attested slice", "POST", slices, own)
    readmit = {"metadata": {"annotations": {admission.READMIT: "victim-twin=any"}}}
    path = f"{API}/{ns}/minerpools/victim"
    editor.attempt("re-admit a chip on the pool", "PATCH", path, readmit, merge=True)


def test_a_namespace_editor_never_gets_a_request_routed(
    kube: KubeRest,
    sandbox: Sandbox,
    namespace: str,
    sweeping_operator: OperatorProcess,  # noqa: F811
    cluster_gateway: tuple[str, str],
    trap: Trap,
) -> None:
    ns, (gateway, key) = namespace, cluster_gateway
    pods, _ = start_pool(kube, ns, "victim", 2)
    route = {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": "victim"},
        "spec": {
            "model": PUBLIC_MODEL,
            "backends": [{"pool": "victim"}],
            "constraints": {"allowedTee": ["simulated"]},
        },
    }
    kube.post(f"{API}/{ns}/routes", route)
    operator_key = sweeping_operator.release_public
    genuine = wait_for(
        lambda: (
            (found := signed_keys(kube, ns, "victim", operator_key)) and len(found) == 2 and found
        ),
        timeout_s=30,
        what="two signed admission records",
    )
    expected = {f"{ns}/victim/{name}": fingerprint for name, fingerprint in genuine.items()}
    wait_for(lambda: routed(gateway) == expected, timeout_s=30, what="the gateway to route them")

    editor = Editor(kube, sandbox, ns)
    forge(editor, kube, ns, pods[0], trap.address)
    assert editor.tried["create a twin miner pod"] == 201  # `edit` may do this much
    assert editor.tried[f"forge {pods[0]['metadata']['name']}'s verdict"] == 200
    twin = wait_for(
        lambda: next(
            (p for p in running_pods(kube, ns, "victim") if p["metadata"]["name"] == "victim-twin"),
            None,
        ),
        timeout_s=60,
        what="the twin pod to run (a real agent, with a valid simulated TEE)",
    )

    def attested_after(when: dt.datetime) -> bool:
        """The operator's own verdict is back on every real pod, from a sweep after `when`
        (a sweep challenges every pod it would challenge, the twin included, at once)."""
        real = [
            p for p in running_pods(kube, ns, "victim") if p["metadata"]["name"] != "victim-twin"
        ]
        notes = [p["metadata"].get("annotations") or {} for p in real]
        times = [admission.parse_time(n.get(admission.ATTESTED_AT, "")) for n in notes]
        fresh = all(t is not None and t > when for t in times)
        return fresh and all(n.get(admission.HPKE_PUBLIC_KEY) != ATTACKER_HPKE for n in notes)

    twin_running = dt.datetime.now(dt.UTC)
    wait_for(lambda: attested_after(twin_running), timeout_s=30, what="a sweep with the twin up")
    second = dt.datetime.now(dt.UTC)
    wait_for(lambda: attested_after(second), timeout_s=30, what="another sweep after that")
    answers = [chat(gateway, key) for _ in range(10)]

    assert [a.status_code for a in answers] == [200] * 10  # sealed to the real enclaves' keys
    assert routed(gateway) == expected
    assert signed_keys(kube, ns, "victim", operator_key) == genuine
    slice_ = kube.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{admission.slice_name('victim')}"
    )
    listed = {e.address for e in admission.admitted(slice_, dt.datetime.now(dt.UTC))}
    assert twin["status"]["podIP"] not in listed and trap.address not in listed
    assert trap.hits == []
