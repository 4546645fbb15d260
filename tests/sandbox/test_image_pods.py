"""A pod whose image is in the OCI image store runs from that image, as a kubelet would run
it: the image's root, entrypoint and user, the pod's env and volumes, probes inside it."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import runner_ready, wait_for

from . import oci_images
from . import workloads as w

pytestmark = pytest.mark.sandbox
CHECKOUT = Path(__file__).resolve().parents[2]


def report(ip: str) -> dict[str, str]:
    with urllib.request.urlopen(f"http://{ip}:8080/report", timeout=5) as response:
        text = response.read().decode()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def app_container(ref: str) -> dict[str, Any]:
    in_image_only = (
        "import os, socket; os.stat('/app/serve.py'); "
        "socket.create_connection(('127.0.0.1', 8080), timeout=2).close()"
    )
    return {
        "name": "app",
        "image": ref,
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            {"name": "GREETING", "value": "from-pod"},
            {"name": "HOST_PATH", "value": str(CHECKOUT)},
        ],
        # An exec probe: it passes only if it runs inside the container's own root.
        "readinessProbe": {
            "exec": {"command": ["/usr/bin/python3.11", "-c", in_image_only]},
            "periodSeconds": 1,
        },
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
        },
        "volumeMounts": [
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def test_pod_runs_from_its_oci_image_as_the_image_user(
    kube: KubeRest, namespace: str, sandbox: Sandbox
) -> None:
    ref = oci_images.ensure_image(oci_images.SERVER_IMAGE, sandbox.settings.image_store)
    kube.post(
        f"/api/v1/namespaces/{namespace}/pods",
        w.pod(
            "from-image",
            {
                **w.POOL_PLACEMENT["kind-simtee"],
                "containers": [app_container(ref)],
                "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
            },
        ),
    )
    pod = wait_for(
        lambda: (
            runner_ready(p := kube.get(f"/api/v1/namespaces/{namespace}/pods/from-image")) and p
        ),
        timeout_s=120,  # the first run unpacks the image
        what="the pod from the OCI image to be ready (its exec probe run inside it)",
    )
    assert pod["status"]["containerStatuses"][0]["imageID"].startswith(f"{ref}@sha256:")
    seen = report(pod["status"]["podIP"])
    assert (seen["uid"], seen["gid"]) == ("65532", "65532")  # the image's User, not root
    assert seen["debian_version"] == "True"  # the image's root filesystem ...
    assert seen["host_path_visible"] == "False"  # ... and not the host's checkout
    assert seen["root_writable"].startswith("no")  # readOnlyRootFilesystem (/tmp is a volume)
    assert seen["scratch_writable"] == "yes"  # the emptyDir is writable
    assert (seen["greeting"], seen["image_only"]) == ("from-pod", "yes")  # pod env wins
    assert seen["hosts"] == f"{pod['status']['podIP']}\tfrom-image"
    assert seen["cwd"] == "/app"
    assert seen["no_new_privs"] == "1"  # allowPrivilegeEscalation: false


def test_unknown_image_user_is_reported_as_a_config_error(
    kube: KubeRest, namespace: str, sandbox: Sandbox
) -> None:
    ghost = oci_images.ImageRecipe(
        name="ghost-user",
        files=oci_images.SERVER_IMAGE.files,
        entrypoint=oci_images.SERVER_IMAGE.entrypoint,
        user="ghost",
    )
    ref = oci_images.ensure_image(ghost, sandbox.settings.image_store)
    kube.post(
        f"/api/v1/namespaces/{namespace}/pods",
        w.pod(
            "ghost",
            {**w.POOL_PLACEMENT["kind-simtee"], "containers": [{"name": "app", "image": ref}]},
        ),
    )

    def waiting() -> str | None:
        pod = kube.get(f"/api/v1/namespaces/{namespace}/pods/ghost")
        state = ((pod["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get(
            "waiting"
        ) or {}
        if state.get("reason") in (None, "ContainerCreating"):
            return None
        return f"{state['reason']}: {state.get('message')}"

    message = wait_for(waiting, timeout_s=120, what="a waiting reason for the unknown user")
    assert message.startswith("CreateContainerConfigError")
    assert "'ghost'" in message
