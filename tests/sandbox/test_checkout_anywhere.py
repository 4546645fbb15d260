"""The runner's host-mode pods work wherever the checkout lives. Run from a clone under /tmp,
a pod with an emptyDir at /tmp (as every miner pod has) used to crash-loop: the volume hid
the checkout's interpreter (`cannot set up the container: No such file or directory`)."""

from __future__ import annotations

import pytest

from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import runner_ready, wait_for

from . import workloads as w

pytestmark = pytest.mark.sandbox


def test_host_pod_with_an_emptydir_at_tmp_runs(kube: KubeRest, namespace: str) -> None:
    container = w.probe_container(volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}])
    kube.post(
        f"/api/v1/namespaces/{namespace}/pods",
        w.pod(
            "tmp-volume",
            {
                **w.POOL_PLACEMENT["kind-simtee"],
                "securityContext": {"runAsUser": 65532},
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        ),
    )

    def state() -> str:
        pod = kube.get(f"/api/v1/namespaces/{namespace}/pods/tmp-volume")
        if runner_ready(pod):
            return "ready"
        status = (pod["status"].get("containerStatuses") or [{}])[0]
        return "crash-looping" if status.get("restartCount", 0) >= 1 else ""

    assert wait_for(state, timeout_s=60, what="the pod to be ready or crash") == "ready"
