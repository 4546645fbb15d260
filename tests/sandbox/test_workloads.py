"""Deployments schedule onto the right pools; the runner makes our images real processes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from teeroute_sandbox import netns, nodepools
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import runner_ready as ready
from teeroute_sandbox.testing import wait_for

from . import workloads as w

pytestmark = pytest.mark.sandbox

POOL_OF_NODE = {name: pool.name for pool in nodepools.POOLS for name in pool.node_names}


def pods(kube: KubeRest, ns: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.get(
        f"/api/v1/namespaces/{ns}/pods", labelSelector=f"app={app}"
    )["items"]
    return items


def http_get(ip: str, path: str, port: int = 8080) -> Any:
    with urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=5) as response:
        body = response.read().decode()
    return json.loads(body) if body.startswith(("{", "[")) else body


@pytest.mark.parametrize("pool", sorted(w.POOL_PLACEMENT))
def test_deployment_pods_land_only_on_the_matching_pool(
    kube: KubeRest, namespace: str, pool: str
) -> None:
    name = f"web-{pool}"
    kube.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        w.deployment(name, 3, w.POOL_PLACEMENT[pool], w.probe_container()),
    )
    kube.post(f"/api/v1/namespaces/{namespace}/services", w.service(name))

    running = wait_for(
        lambda: (
            [p for p in pods(kube, namespace, name) if ready(p)]
            if len([p for p in pods(kube, namespace, name) if ready(p)]) == 3
            else None
        ),
        timeout_s=60,
        what=f"3 ready pods of {name}",
    )
    assert {POOL_OF_NODE[p["spec"]["nodeName"]] for p in running} == {pool}
    assert all(p["status"]["phase"] == "Running" for p in running)
    wait_for(
        lambda: (
            [
                rs["status"].get("readyReplicas")
                for rs in kube.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]
            ]
            == [3]
        ),
        what="the ReplicaSet to count 3 ready replicas",
    )

    pod_ips = {p["status"]["podIP"] for p in running}

    def slice_ips() -> set[str] | None:
        slices = kube.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
            labelSelector=f"kubernetes.io/service-name={name}",
        )["items"]
        ips = {
            a
            for s in slices
            for e in s.get("endpoints") or []
            for a in e["addresses"]
            if e["conditions"].get("ready")
        }
        return ips if ips == pod_ips else None

    wait_for(slice_ips, what="the EndpointSlice to list the 3 pod IPs")
    for ip in pod_ips:  # real processes, each answering on its own pod IP
        assert http_get(ip, "/whoami")["local_address"] == ip


def test_pods_without_the_toleration_stay_off_tainted_gpu_nodes(
    kube: KubeRest, namespace: str
) -> None:
    placement = {"nodeSelector": w.POOL_PLACEMENT["aks-cvmgpu"]["nodeSelector"]}
    kube.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        w.deployment("untolerated", 1, placement, w.probe_container()),
    )

    def unschedulable() -> bool:
        found = pods(kube, namespace, "untolerated")
        conditions = found[0]["status"].get("conditions") or [] if found else []
        return any(
            c["type"] == "PodScheduled"
            and c.get("reason") == "Unschedulable"
            and "untolerated taint" in c.get("message", "")
            for c in conditions
        )

    wait_for(unschedulable, what="the scheduler to refuse the tainted nodes")
    assert not pods(kube, namespace, "untolerated")[0]["spec"].get("nodeName")


def test_runner_pod_sees_secret_env_and_calls_the_apiserver_with_its_token(
    kube: KubeRest, namespace: str
) -> None:
    ns = namespace
    kube.post(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": "correct-horse"},
        },
    )
    kube.post(
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prober"}},
    )
    kube.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    kube.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "prober-reads-pods"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "prober", "namespace": ns}],
        },
    )
    container = w.probe_container(
        env={"PROBE_READABLE": "/etc/creds"},
        volumeMounts=[{"name": "creds", "mountPath": "/etc/creds", "readOnly": True}],
    )
    container["env"] += [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    kube.post(
        f"/api/v1/namespaces/{ns}/pods",
        w.pod(
            "probe",
            {
                **w.POOL_PLACEMENT["kind-simtee"],
                "serviceAccountName": "prober",
                "securityContext": {"runAsUser": 65532, "fsGroup": 65532},
                "containers": [container],
                "volumes": [{"name": "creds", "secret": {"secretName": "creds"}}],
            },
        ),
    )

    pod = wait_for(
        lambda: ready(p := kube.get(f"/api/v1/namespaces/{ns}/pods/probe")) and p,
        timeout_s=60,
        what="the probe pod to be ready",
    )
    ip = pod["status"]["podIP"]
    me = http_get(ip, "/whoami")
    assert (me["uid"], me["hostname"]) == (65532, "probe")
    assert 65532 in me["groups"]
    assert me["env"]["POD_NAME"] == "probe"
    assert me["env"]["POD_IP"] == ip
    assert me["env"]["NODE_NAME"] == pod["spec"]["nodeName"]
    assert me["env"]["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert http_get(ip, "/file?path=/etc/creds/password") == "correct-horse"

    assert http_get(ip, "/api/whoami")["username"] == f"system:serviceaccount:{ns}:prober"
    can = f"/api/can-i?namespace={ns}&verb="
    assert http_get(ip, can + "list&resource=pods") == {"allowed": True}
    assert http_get(ip, can + "list&resource=secrets") == {"allowed": False}
    assert http_get(ip, can + "delete&resource=pods") == {"allowed": False}


def test_crashing_container_is_restarted_and_its_exit_reported(
    kube: KubeRest, namespace: str
) -> None:
    container = w.probe_container(env={"PROBE_EXIT_AFTER_S": "1"})
    kube.post(
        f"/api/v1/namespaces/{namespace}/pods",
        w.pod(
            "crashy",
            {
                **w.POOL_PLACEMENT["kind-simtee"],
                "securityContext": {"runAsUser": 65532},
                "containers": [container],
            },
        ),
    )

    def restarted_twice() -> dict[str, Any] | None:
        pod = kube.get(f"/api/v1/namespaces/{namespace}/pods/crashy")
        statuses = pod["status"].get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount", 0) >= 2 else None

    status = wait_for(restarted_twice, timeout_s=30, what="two restarts")
    assert status["lastState"]["terminated"]["exitCode"] == 3


def test_deleting_a_pod_stops_its_process_and_network(
    kube: KubeRest, namespace: str, sandbox: Sandbox
) -> None:
    kube.post(
        f"/api/v1/namespaces/{namespace}/pods",
        w.pod(
            "short-lived",
            {
                **w.POOL_PLACEMENT["kind-simtee"],
                "securityContext": {"runAsUser": 65532},
                "containers": [w.probe_container()],
            },
        ),
    )
    pod = wait_for(
        lambda: ready(p := kube.get(f"/api/v1/namespaces/{namespace}/pods/short-lived")) and p,
        what="the pod to be ready",
    )
    uid, ip = pod["metadata"]["uid"], pod["status"]["podIP"]
    assert http_get(ip, "/healthz") == "ok"
    pod_ns = f"{sandbox.pod_netns_prefix}{uid}"
    assert netns.exists(pod_ns)

    kube.delete(f"/api/v1/namespaces/{namespace}/pods/short-lived")
    # The runner removes the network namespace first, then the pod's directory.
    wait_for(
        lambda: not netns.exists(pod_ns) and not (sandbox.layout.pods / uid).exists(),
        what="the pod's network namespace and directory to go",
    )
    with pytest.raises(OSError):
        http_get(ip, "/healthz")


def test_config_error_is_reported_instead_of_starting(kube: KubeRest, namespace: str) -> None:
    container = w.probe_container()
    container["env"].append(
        {"name": "MISSING", "valueFrom": {"secretKeyRef": {"name": "does-not-exist", "key": "k"}}}
    )
    kube.post(
        f"/api/v1/namespaces/{namespace}/pods",
        w.pod(
            "misconfigured",
            {
                **w.POOL_PLACEMENT["kind-simtee"],
                "securityContext": {"runAsUser": 65532},
                "containers": [container],
            },
        ),
    )

    def waiting_reason() -> str | None:
        pod = kube.get(f"/api/v1/namespaces/{namespace}/pods/misconfigured")
        statuses = pod["status"].get("containerStatuses") or [{}]
        waiting = statuses[0].get("state", {}).get("waiting", {})
        # The runner first reports ContainerCreating while it sets the pod up.
        if waiting.get("reason") in (None, "ContainerCreating"):
            return None
        return f"{waiting.get('reason')}: {waiting.get('message')}"

    reason = wait_for(waiting_reason, what="a waiting reason other than ContainerCreating")
    assert reason.startswith("CreateContainerConfigError")
    assert "does-not-exist" in reason


def test_non_root_pod_may_not_run_as_root(kube: KubeRest, namespace: str) -> None:
    container = w.probe_container()
    container["securityContext"]["runAsUser"] = 0
    kube.post(
        f"/api/v1/namespaces/{namespace}/pods",
        w.pod("rooted", {**w.POOL_PLACEMENT["kind-simtee"], "containers": [container]}),
    )
    message = wait_for(
        lambda: (
            (
                kube.get(f"/api/v1/namespaces/{namespace}/pods/rooted")["status"].get(
                    "containerStatuses"
                )
                or [{}]
            )[0]
            .get("state", {})
            .get("waiting", {})
            .get("message")
        ),
        what="the runAsNonRoot refusal",
    )
    assert "runAsNonRoot" in message


def test_runner_leaves_no_mount_points_behind(kube: KubeRest, namespace: str) -> None:
    mount_path = Path(f"/etc/teeroute-test-{namespace}/nested")
    container = w.probe_container(volumeMounts=[{"name": "scratch", "mountPath": str(mount_path)}])
    kube.post(
        f"/api/v1/namespaces/{namespace}/pods",
        w.pod(
            "mounter",
            {
                **w.POOL_PLACEMENT["kind-simtee"],
                "securityContext": {"runAsUser": 65532},
                "containers": [container],
                "volumes": [{"name": "scratch", "emptyDir": {}}],
            },
        ),
    )
    wait_for(
        lambda: ready(kube.get(f"/api/v1/namespaces/{namespace}/pods/mounter")),
        what="the pod to be ready",
    )
    assert mount_path.is_dir()
    kube.delete(f"/api/v1/namespaces/{namespace}/pods/mounter")
    wait_for(lambda: not mount_path.parent.exists(), what="the mount points to be removed")
