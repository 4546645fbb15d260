"""One pod the runner runs: its network, volumes, containers and reported status.

A container whose image is in the OCI store runs from the image's unpacked root (image
mode, see `rootfs`); one whose image maps to a host command runs on the host's tree."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from teeroute_sandbox.restclient import ApiError, KubeRest
from teeroute_sandbox.runner import etcfiles, podnet
from teeroute_sandbox.runner.images import ImageConfig, ImageMap, Resolved, store_image_config
from teeroute_sandbox.runner.launcher import remove_created
from teeroute_sandbox.runner.oci import ImageError
from teeroute_sandbox.runner.plan import (
    ConfigError,
    LaunchPlan,
    Lookups,
    Mount,
    build_plan,
    service_env,
)
from teeroute_sandbox.runner.status import pod_status_patch
from teeroute_sandbox.runner.supervisor import Container, ContainerState, now_rfc3339
from teeroute_sandbox.runner.volumes import VolumeState, write_volumes

Obj = dict[str, Any]
MAX_GRACE_S = 10.0


def interpreter_paths() -> list[str]:
    """Where this Python and its packages live (base installation, virtualenv, sys.path)."""
    paths = {sys.base_prefix, sys.prefix, *(p for p in sys.path if p and Path(p).exists())}
    return sorted({os.path.realpath(p) for p in paths})


class PodSandbox:
    def __init__(
        self, api: KubeRest, pod: Obj, images: ImageMap, root: Path, netns_prefix: str, log: Any
    ) -> None:
        self.api = api
        self.pod = pod
        self.images = images
        self.uid: str = pod["metadata"]["uid"]
        self.dir = root / self.uid
        self.netns_prefix = netns_prefix
        self.log = log
        self.containers: list[Container] = []
        self.volumes: VolumeState | None = None
        self.config_error: str | None = None
        self._was_ready: bool | None = None
        self._status_lock = threading.Lock()

    @property
    def key(self) -> str:
        meta = self.pod["metadata"]
        return f"{meta['namespace']}/{meta['name']}"

    def start(self) -> None:
        # kwok marked the pod Ready when it gave it an IP; until our processes say so, it is not.
        self._report_waiting("ContainerCreating", "")
        pod_ip = self.pod["status"]["podIP"]
        name = podnet.create(self.netns_prefix, self.uid, pod_ip)
        try:
            self.volumes = write_volumes(self.api, self.pod, self.dir / "volumes")
            plans = [self._plan(c, self.volumes.dirs) for c in self.pod["spec"]["containers"]]
        except ConfigError as exc:
            self.config_error = str(exc)
            self._report_config_error(exc.reason, str(exc))
            return
        self.config_error = None
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for container, (plan, plan_file) in zip(self.pod["spec"]["containers"], plans, strict=True):
            self.containers.append(
                Container(container, plan, plan_file, name, pod_ip, policy, self.publish_status)
            )
        for c in self.containers:
            c.start()
        self.log(f"started pod {self.key} at {pod_ip} ({len(self.containers)} containers)")

    def _plan(self, container: Obj, volume_dirs: dict[str, str]) -> tuple[LaunchPlan, Path]:
        found = self.images.lookup(container["image"])
        if found is None:  # the store or map changed since the runner took the pod
            raise ImageError(f"image {container['image']!r} is not in the image store or map")
        lookups = Lookups(
            secrets=self._env_sources("secrets", "secretKeyRef", "secretRef"),
            config_maps=self._env_sources("configmaps", "configMapKeyRef", "configMapRef"),
            service_env=self._service_env(),
            volume_dirs=volume_dirs,
        )
        image, mode = self._mode(found, container["name"])
        plan = replace(
            build_plan(self.pod, container, image, lookups),
            log_path=str(self.dir / f"{container['name']}.log"),
            **mode,
        )
        plan_file = self.dir / f"{container['name']}.plan.json"
        plan_file.parent.mkdir(parents=True, exist_ok=True)
        plan_file.write_text(json.dumps(plan.to_json()))
        plan_file.chmod(0o600)  # it holds env values, which may be secrets
        return plan, plan_file

    def _mode(self, found: Resolved, name: str) -> tuple[ImageConfig, dict[str, Any]]:
        """The image's config, and the plan fields of its mode."""
        if found.store is not None:  # image mode: the image's own root
            root = self.images.unpacked(found.store)
            return store_image_config(found.store, root), {
                "rootfs": str(root),
                "container_dir": str(self.dir / "containers" / name),
                "etc_mounts": self._etc_files(),
                "image_id": f"{found.ref}@{found.store.manifest_digest}",
            }
        if found.host is not None:  # host mode: a command of this machine
            return found.host, {"reveal": interpreter_paths()}
        raise ImageError(f"image {found.ref!r} resolves to nothing")

    def _etc_files(self) -> list[Mount]:
        """/etc/hosts, /etc/hostname and /etc/resolv.conf, written once for the pod."""
        etc = self.dir / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        node_resolv = Path("/etc/resolv.conf")
        files = {
            "hosts": etcfiles.hosts_file(self.pod),
            "hostname": etcfiles.hostname(self.pod) + "\n",
            "resolv.conf": etcfiles.resolv_conf(
                self.pod, node_resolv.read_text() if node_resolv.is_file() else ""
            ),
        }
        for name, text in files.items():
            (etc / name).write_text(text)
            (etc / name).chmod(0o644)
        return [Mount(str(etc / name), f"/etc/{name}", read_only=False) for name in files]

    def _env_sources(self, resource: str, key_ref: str, from_ref: str) -> dict[str, dict[str, str]]:
        """The Secrets/ConfigMaps the containers' env refers to, decoded."""
        names: set[str] = set()
        for c in self.pod["spec"]["containers"]:
            names |= {
                v["valueFrom"][key_ref]["name"]
                for v in c.get("env") or []
                if key_ref in (v.get("valueFrom") or {})
            }
            names |= {s[from_ref]["name"] for s in c.get("envFrom") or [] if from_ref in s}
        ns = self.pod["metadata"]["namespace"]
        found: dict[str, dict[str, str]] = {}
        for name in names:
            obj = self.api.get_or_none(f"/api/v1/namespaces/{ns}/{resource}/{name}")
            if obj is None:
                continue
            data = obj.get("data") or {}
            found[name] = (
                {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
                if resource == "secrets"
                else dict(data)
            )
        return found

    def _service_env(self) -> dict[str, str]:
        ns = self.pod["metadata"]["namespace"]
        services = []
        if self.pod["spec"].get("enableServiceLinks", True):
            services = self.api.get(f"/api/v1/namespaces/{ns}/services")["items"]
        master = self.api.get_or_none("/api/v1/namespaces/default/services/kubernetes")
        env = service_env(services)
        env.update(service_env([master] if master else []))
        return env

    def refresh_volumes(self) -> None:
        """Re-write volumes (Secrets/ConfigMaps may have changed, tokens age)."""
        if self.config_error is not None or self.volumes is None:
            return
        try:
            self.volumes = write_volumes(self.api, self.pod, self.dir / "volumes")
        except (ConfigError, ApiError) as exc:
            self.log(f"pod {self.key}: volume refresh failed: {exc}")

    def needs_token_refresh(self) -> bool:
        return self.volumes is not None and time.time() >= self.volumes.refresh_at

    def stop(self) -> None:
        grace = min(float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)), MAX_GRACE_S)
        for c in self.containers:
            c.stop(grace)
            remove_created(c.plan_file)
        podnet.delete(self.netns_prefix, self.uid)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.log(f"stopped pod {self.key}")

    def publish_status(self) -> None:
        with self._status_lock:
            states = [c.state for c in self.containers]
            self._patch(states)

    def _report_config_error(self, reason: str, message: str) -> None:
        self.log(f"pod {self.key}: {reason}: {message}")
        self._report_waiting(reason, message)

    def _report_waiting(self, reason: str, message: str) -> None:
        states = [
            ContainerState(
                c["name"],
                c["image"],
                "waiting",
                reason=reason,
                message=message,
            )
            for c in self.pod["spec"]["containers"]
        ]
        with self._status_lock:
            self._patch(states)

    def _patch(self, states: list[ContainerState]) -> None:
        patch, ready = pod_status_patch(
            self.uid,
            states,
            self._was_ready,
            now_rfc3339(),
            self.pod["spec"].get("restartPolicy", "Always"),
        )
        meta = self.pod["metadata"]
        try:
            self.api.patch(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                patch,
                kind="strategic",
            )
            self._was_ready = ready
        except ApiError as exc:
            if exc.status != 404:
                self.log(f"pod {self.key}: status update failed: {exc}")
