"""Secret release needs consent, and the operator reads no Secret it was not given (issue 14,
hole 7), against the sandbox with the operator running as its own ServiceAccount under the
RBAC it ships with (e2e/sandbox/operator.yaml: nothing on Secrets) and a real token.

The owner of a miner namespace grants the operator `get` on named Secrets (a Role with
`resourceNames`); each Secret names the pools it is offered to (teeroute.dev/release-to); a
pool gets secrets only if it pins its enclaves' measurements. Every refusal is a verdict on
the endpoint naming its check, and the enclave gets nothing."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from teeroute import admission
from teeroute_operator.release import RELEASE_TO
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import wait_for

from .conftest import ROOT, OperatorProcess
from .test_attestation import API, agent_outside, attested_pool, free_port, status_of
from .test_secret_release_sandbox import secret, secret_ref

pytestmark = pytest.mark.sandbox

Obj = dict[str, Any]
MANIFEST = ROOT / "e2e" / "sandbox" / "operator.yaml"
SA_NAMESPACE, SA_NAME = "teeroute-system", "teeroute-operator"
SA = f"system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}"
VALUE = "sk-consent-value-7e21c04b9d"
METRICS_TOKEN = "operator-scrape-91c5e2d0"  # noqa: S105 - a test token


@pytest.fixture(scope="module")
def operator_kubeconfig(
    kubectl: Callable[..., Any],
    kube: KubeRest,
    sandbox: Sandbox,
    crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """The operator's RBAC as shipped (without its Deployment), and a kubeconfig holding a
    token of its ServiceAccount."""
    rbac = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and d["kind"] != "Deployment"]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    token = kube.post(
        f"/api/v1/namespaces/{SA_NAMESPACE}/serviceaccounts/{SA_NAME}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 7200},
        },
    )["status"]["token"]
    admin = yaml.safe_load(sandbox.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"][:1],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [
            {
                "name": "operator",
                "context": {"cluster": admin["clusters"][0]["name"], "user": "operator"},
            }
        ],
        "current-context": "operator",
    }
    path = tmp_path_factory.mktemp("sa") / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    yield path
    cluster_wide = [d for d in rbac if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    kubectl("delete", "-f", "-", "--ignore-not-found", stdin=yaml.safe_dump_all(cluster_wide))


@pytest.fixture(scope="module")
def sa_operator(
    sandbox: Sandbox, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    directory = tmp_path_factory.mktemp("sa-operator")
    token_file = directory / "metrics-token"
    token_file.write_text(METRICS_TOKEN)
    process = OperatorProcess(
        sandbox,
        directory / "operator.log",
        metrics_port=free_port(),
        kubeconfig=operator_kubeconfig,
        TEEROUTE_OPERATOR_METRICS_TOKEN_FILE=str(token_file),
    )
    process.start()
    yield process
    process.stop()


def grant(kube: KubeRest, ns: str, *names: str) -> None:
    """What a namespace admin does: let the operator `get` exactly these Secrets."""
    kube.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "teeroute-operator-secrets"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": list(names),
                    "verbs": ["get"],
                }
            ],
        },
    )
    kube.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "teeroute-operator-secrets"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "teeroute-operator-secrets",
            },
            "subjects": [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": SA_NAMESPACE}],
        },
    )


def external_pool(name: str, url: str, secret_name: str, *, pinned: bool = True) -> Obj:
    pool = attested_pool(name)
    for key in ("replicas", "images", "placement", "resources"):
        del pool["spec"][key]
    if not pinned:
        del pool["spec"]["attestation"]["allowedMeasurements"]
    pool["spec"]["endpoints"] = [{"name": "m0", "url": url}]
    pool["spec"]["secrets"] = [secret_ref("engine-api-key", secret_name, "token")]
    return pool


def entry(kube: KubeRest, ns: str, pool: str) -> Obj:
    found = status_of(kube, ns, pool).get("endpoints") or []
    return found[0] if found else {}


def verdict(kube: KubeRest, ns: str, pool: str, check: str) -> Obj:
    """The endpoint's status entry once its release failed on `check`."""
    return wait_for(
        lambda: (e := entry(kube, ns, pool)) and f"{check}: " in (e.get("failure") or "") and e,
        timeout_s=30,
        what=f"the release to fail {check}",
    )


def admitted(kube: KubeRest, ns: str, pool: str) -> set[str]:
    status = status_of(kube, ns, pool)
    return {e.name for e in admission.admitted_external(status, dt.datetime.now(dt.UTC))}


@pytest.fixture
def enclave(
    sandbox: Sandbox, sa_operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[Callable[[str], str]]:
    """Start a remote miner's agent for a pool of the namespace, pinning the operator's release
    key (so it would take a release); returns its URL."""
    pin = base64.b64encode(sa_operator.release_public).decode()
    with ExitStack() as stack:

        def start(pool: str) -> str:
            directory = tmp_path / pool
            directory.mkdir()
            settings = {
                "TEEROUTE_AGENT_RELEASE_KEY": pin,
                "TEEROUTE_AGENT_POOL": f"{namespace}/{pool}",
            }
            return stack.enter_context(agent_outside(sandbox, directory, **settings))

        yield start


def test_a_secret_that_does_not_name_the_pool_is_not_released(
    kube: KubeRest, namespace: str, enclave: Callable[[str], str]
) -> None:
    grant(kube, namespace, "provider")
    # Offered to another pool of the namespace, not to this one.
    kube.post(
        f"/api/v1/namespaces/{namespace}/secrets",
        secret("provider", {"token": VALUE}, release_to="another-pool"),
    )
    kube.post(
        f"{API}/{namespace}/minerpools", external_pool("consent", enclave("consent"), "provider")
    )
    found = verdict(kube, namespace, "consent", "secrets.optIn")
    assert found["failure"].endswith(
        f'secrets.optIn: Secret "provider" does not name pool "consent" in its {RELEASE_TO} '
        "annotation (secret engine-api-key)"
    )
    assert found["expiresAt"] == "" and found["secretsReleased"] == ""
    assert admitted(kube, namespace, "consent") == set()

    # Its owner offers it to the pool: released, and the endpoint admitted.
    kube.patch(
        f"/api/v1/namespaces/{namespace}/secrets/provider",
        {"metadata": {"annotations": {RELEASE_TO: "another-pool,consent"}}},
    )
    wait_for(
        lambda: admitted(kube, namespace, "consent") == {"m0"},
        timeout_s=30,
        what="the endpoint admitted once the Secret names its pool",
    )
    assert len(entry(kube, namespace, "consent")["secretsReleased"]) == 64


def test_a_pool_that_pins_no_measurement_gets_no_secret(
    kube: KubeRest, namespace: str, enclave: Callable[[str], str]
) -> None:
    grant(kube, namespace, "provider")
    kube.post(
        f"/api/v1/namespaces/{namespace}/secrets",
        secret("provider", {"token": VALUE}, release_to="unpinned"),
    )
    pool = external_pool("unpinned", enclave("unpinned"), "provider", pinned=False)
    kube.post(f"{API}/{namespace}/minerpools", pool)
    found = verdict(kube, namespace, "unpinned", "secrets.measurementsPinned")
    assert "attestation.allowedMeasurements is empty" in found["failure"]
    assert found["expiresAt"] == "" and found["secretsReleased"] == ""
    assert admitted(kube, namespace, "unpinned") == set()


def can_i(kubectl: Callable[..., Any], namespace: str, *what: str) -> bool:
    done = kubectl("auth", "can-i", *what, "-n", namespace, "--as", SA, check=False)
    return bool(done.stdout.strip() == "yes")


def as_operator(kubeconfig: Path, path: str) -> int:
    """The status of a real GET with the operator's own token."""
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    token = config["users"][0]["user"]["token"]
    verify = ssl.create_default_context(cadata=ca)
    with httpx.Client(base_url=cluster["server"], verify=verify) as client:
        return client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code


def test_the_operator_reads_only_the_secrets_it_was_granted(
    kube: KubeRest,
    kubectl: Callable[..., Any],
    namespace: str,
    operator_kubeconfig: Path,
    enclave: Callable[[str], str],
) -> None:
    grant(kube, namespace, "provider")
    for name in ("provider", "ungranted"):  # both offered to the pool
        kube.post(
            f"/api/v1/namespaces/{namespace}/secrets",
            secret(name, {"token": VALUE}, release_to="ungranted"),
        )
    assert can_i(kubectl, namespace, "get", "secret/provider")
    assert not can_i(kubectl, namespace, "get", "secret/ungranted")
    for verb in ("get", "list", "watch"):
        assert not can_i(kubectl, namespace, verb, "secrets")
        for elsewhere in ("kube-system", SA_NAMESPACE, "default"):
            assert not can_i(kubectl, elsewhere, verb, "secrets")

    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    assert as_operator(operator_kubeconfig, f"{secrets}/provider") == 200
    assert as_operator(operator_kubeconfig, f"{secrets}/ungranted") == 403
    assert as_operator(operator_kubeconfig, secrets) == 403  # list
    assert as_operator(operator_kubeconfig, "/api/v1/secrets") == 403
    release_key = "/api/v1/namespaces/teeroute-system/secrets/teeroute-release-key"
    assert as_operator(operator_kubeconfig, release_key) == 403

    # A pool naming the Secret it was not granted: the release fails, naming the check.
    kube.post(
        f"{API}/{namespace}/minerpools",
        external_pool("ungranted", enclave("ungranted"), "ungranted"),
    )
    found = verdict(kube, namespace, "ungranted", "secrets.readable")
    assert 'may not read Secret "ungranted" (HTTP 403' in found["failure"]
    assert found["expiresAt"] == "" and found["secretsReleased"] == ""


def test_the_operators_metrics_need_its_token(sa_operator: OperatorProcess) -> None:
    url = f"http://127.0.0.1:{sa_operator.metrics_port}/metrics"
    wait_for(lambda: _status(url, None) == 401, what="the operator's metrics endpoint")
    assert _status(url, "Bearer wrong") == 401
    answer = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5)
    assert answer.status_code == 200 and "teeroute_" in answer.text


def _status(url: str, authorization: str | None) -> int | None:
    headers = {"Authorization": authorization} if authorization else {}
    try:
        return httpx.get(url, headers=headers, timeout=5).status_code
    except httpx.TransportError:
        return None


@pytest.fixture
def listener(sandbox: Sandbox) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on the sandbox's private address that records every request it gets."""
    hits: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((sandbox.settings.advertise_address, 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{sandbox.settings.advertise_address}:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_endpoint_urls_outside_the_allow_list_are_never_called(
    kube: KubeRest,
    namespace: str,
    sa_operator: OperatorProcess,
    listener: tuple[str, list[str]],
) -> None:
    """The test operator allows http and loopback (its agents live there), and `*` hosts:
    a private address, the metadata address and a file URL are still refused."""
    internal, hits = listener
    pool = external_pool("probe", internal, "unused")
    del pool["spec"]["secrets"]
    pool["spec"]["endpoints"] = [
        {"name": "internal", "url": internal},
        {"name": "metadata", "url": "http://169.254.169.254/latest/meta-data"},
        {"name": "mapped", "url": "http://[::ffff:a9fe:a9fe]:80"},
    ]
    kube.post(f"{API}/{namespace}/minerpools", pool)

    def failures() -> dict[str, str] | None:
        found = {
            e["name"]: e.get("failure") or ""
            for e in status_of(kube, namespace, "probe").get("endpoints") or []
        }
        return found if len(found) == 3 and all(found.values()) else None

    found = wait_for(failures, timeout_s=30, what="a verdict on each endpoint")
    host = internal.removeprefix("http://").split(":")[0]
    assert (
        found["internal"]
        == f'rejected: egress.url: host "{host}" matches no allowed host pattern (*)'
    )
    assert found["metadata"] == (
        'rejected: egress.url: host "169.254.169.254" is a link-local or cloud metadata address'
    )
    assert "egress.url: " in found["mapped"] and "metadata" in found["mapped"]
    assert hits == []  # nothing was sent
    assert admitted(kube, namespace, "probe") == set()
