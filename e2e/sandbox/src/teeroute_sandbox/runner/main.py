"""The runner's loop: list and watch pods, run the ones it owns, stop the ones that go.

Ownership is a pure decision (`owns`): the pod is bound to a node, kwok has given it an
IP, it is not terminating or finished, and every container image is in the image store
or maps to a host command.
A relist every `RESYNC_S` repairs anything a dropped watch missed and refreshes volumes.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from teeroute_sandbox import daemons, netns
from teeroute_sandbox.layout import Layout
from teeroute_sandbox.restclient import ApiError, KubeRest
from teeroute_sandbox.runner.images import ImageMap
from teeroute_sandbox.runner.oci import ImageStore
from teeroute_sandbox.runner.pod import PodSandbox

Obj = dict[str, Any]
RESYNC_S = 30


def owns(pod: Obj, images: ImageMap) -> bool:
    spec, status = pod["spec"], pod.get("status") or {}
    return (
        bool(spec.get("nodeName"))
        and bool(status.get("podIP"))
        and not pod["metadata"].get("deletionTimestamp")
        and status.get("phase") not in ("Succeeded", "Failed")
        and not spec.get("hostNetwork")
        and not spec.get("initContainers")
        and all(images.known(c["image"]) for c in spec["containers"])
    )


class Runner:
    def __init__(
        self, api: KubeRest, layout: Layout, netns_name: str, images: ImageMap | None = None
    ) -> None:
        self.api = api
        self.layout = layout
        self.images = images or ImageMap(layout.images)
        self.prefix = f"{netns_name}-pod-"
        self.pods: dict[str, PodSandbox] = {}

    def run(self) -> None:
        self._clean_leftovers()
        while True:
            try:
                version = self._resync()
                deadline = time.monotonic() + RESYNC_S
                for event in self.api.watch("/api/v1/pods", version, timeout_s=RESYNC_S):
                    self._handle(event)
                    if time.monotonic() > deadline:
                        break
            except (ApiError, httpx.HTTPError) as exc:
                log(f"watch interrupted ({exc}); relisting")
                time.sleep(1)

    def _resync(self) -> str:
        for uid in [u for u, s in self.pods.items() if s.config_error is not None]:
            self.pods.pop(uid).stop()  # retried below, with what may have been fixed
        for sandbox in self.pods.values():
            sandbox.refresh_volumes()
        listing = self.api.get("/api/v1/pods")
        seen = set()
        for pod in listing["items"]:
            seen.add(pod["metadata"]["uid"])
            self.reconcile(pod)
        for uid in set(self.pods) - seen:
            self.pods.pop(uid).stop()
        return str(listing["metadata"]["resourceVersion"])

    def _handle(self, event: Obj) -> None:
        kind = event.get("type")
        if kind == "ERROR":
            raise ApiError(
                int(event["object"].get("code", 500)), str(event["object"].get("message"))
            )
        if kind == "BOOKMARK":
            return
        pod = event["object"]
        if kind == "DELETED":
            sandbox = self.pods.pop(pod["metadata"]["uid"], None)
            if sandbox:
                sandbox.stop()
            return
        self.reconcile(pod)

    def reconcile(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        wanted = owns(pod, self.images)
        running = self.pods.get(uid)
        if wanted and running is None:
            sandbox = PodSandbox(self.api, pod, self.images, self.layout.pods, self.prefix, log)
            self.pods[uid] = sandbox
            sandbox.start()
        elif not wanted and running is not None:
            self.pods.pop(uid).stop()
        elif running is not None:
            running.pod = pod
            if running.needs_token_refresh():
                running.refresh_volumes()

    def _clean_leftovers(self) -> None:
        """Pods of a previous runner: their processes died with it; drop what remains."""
        for name in netns.names(self.prefix):
            daemons.terminate(netns.pids(name), grace_s=2)
            netns.delete(name)
        for leftover in self.layout.pods.glob("*"):
            shutil.rmtree(leftover, ignore_errors=True)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main(
    kubeconfig: Path,
    state_dir: Path,
    netns_name: str,
    image_store: Path | None = None,
    rootfs_cache: Path | None = None,
) -> None:
    layout = Layout(state_dir)
    layout.pods.mkdir(parents=True, exist_ok=True)
    store = ImageStore(image_store) if image_store else None
    images = ImageMap(layout.images, store, rootfs_cache or layout.root / "rootfs")
    Runner(KubeRest(kubeconfig), layout, netns_name, images).run()
