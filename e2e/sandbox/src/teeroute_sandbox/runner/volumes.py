"""Writes a pod's volumes to disk where its containers' mounts will point.

Secret, ConfigMap, projected (service-account token, ConfigMap, Secret, downward API) and
downwardAPI volumes are written the kubelet's way: files live in a timestamped directory,
`..data` points at it, each key is a symlink through `..data`, and a refresh swaps
`..data` atomically, so a reader never sees half an update. emptyDir is a directory kept
for the pod's life; hostPath is the host's path.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teeroute_sandbox.restclient import ApiError, KubeRest
from teeroute_sandbox.runner.plan import ConfigError, field_value

Obj = dict[str, Any]
Files = dict[str, tuple[bytes, int]]
"""relative path -> (content, mode)"""

TOKEN_REFRESH_FRACTION = 0.8
"""Re-request a projected token after this share of its lifetime, as the kubelet does."""


@dataclass
class VolumeState:
    """What `write_volumes` returns: host directories, and when tokens need refreshing."""

    dirs: dict[str, str]
    refresh_at: float


def write_volumes(api: KubeRest, pod: Obj, root: Path) -> VolumeState:
    dirs: dict[str, str] = {}
    refresh_at = float("inf")
    ns = pod["metadata"]["namespace"]
    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    for volume in pod["spec"].get("volumes") or []:
        target = root / volume["name"]
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)
        elif "hostPath" in volume:
            dirs[volume["name"]] = volume["hostPath"]["path"]
            continue
        else:
            files, expires = _files(api, pod, ns, volume)
            if files is None:
                continue
            atomic_write(target, files, fs_group)
            refresh_at = min(refresh_at, expires)
        dirs[volume["name"]] = str(target)
    return VolumeState(dirs, refresh_at)


def _files(api: KubeRest, pod: Obj, ns: str, volume: Obj) -> tuple[Files | None, float]:
    never = float("inf")
    if "secret" in volume:
        src = volume["secret"]
        return _keyed(_secret(api, ns, src["secretName"], src.get("optional")), src), never
    if "configMap" in volume:
        src = volume["configMap"]
        return _keyed(_config_map(api, ns, src["name"], src.get("optional")), src), never
    if "downwardAPI" in volume:
        src = volume["downwardAPI"]
        return _downward(pod, src["items"], src.get("defaultMode", 0o644)), never
    if "projected" in volume:
        return _projected(api, pod, ns, volume["projected"])
    return None, never


def _projected(api: KubeRest, pod: Obj, ns: str, spec: Obj) -> tuple[Files, float]:
    mode = spec.get("defaultMode", 0o644)
    files: Files = {}
    refresh_at = float("inf")
    for source in spec.get("sources") or []:
        if "serviceAccountToken" in source:
            token, expires = _token(api, pod, ns, source["serviceAccountToken"])
            files[source["serviceAccountToken"]["path"]] = (token.encode(), mode)
            refresh_at = min(refresh_at, expires)
        elif "configMap" in source:
            src = source["configMap"]
            data = _config_map(api, ns, src["name"], src.get("optional"))
            files.update(_keyed(data, {**src, "defaultMode": mode}))
        elif "secret" in source:
            src = source["secret"]
            data = _secret(api, ns, src["name"], src.get("optional"))
            files.update(_keyed(data, {**src, "defaultMode": mode}))
        elif "downwardAPI" in source:
            files.update(_downward(pod, source["downwardAPI"]["items"], mode))
    return files, refresh_at


def _token(api: KubeRest, pod: Obj, ns: str, src: Obj) -> tuple[str, float]:
    """A TokenRequest bound to the pod, as the kubelet makes for projected tokens."""
    sa = pod["spec"].get("serviceAccountName") or "default"
    lifetime = int(src.get("expirationSeconds", 3607))
    spec: Obj = {
        "expirationSeconds": lifetime,
        "boundObjectRef": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        },
    }
    if src.get("audience"):
        spec["audiences"] = [src["audience"]]
    response = api.post(
        f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    return response["status"]["token"], time.time() + TOKEN_REFRESH_FRACTION * lifetime


def _secret(api: KubeRest, ns: str, name: str, optional: bool | None) -> dict[str, bytes] | None:
    obj = _get(api, f"/api/v1/namespaces/{ns}/secrets/{name}", "secret", name, optional)
    if obj is None:
        return None
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


def _config_map(
    api: KubeRest, ns: str, name: str, optional: bool | None
) -> dict[str, bytes] | None:
    obj = _get(api, f"/api/v1/namespaces/{ns}/configmaps/{name}", "configmap", name, optional)
    if obj is None:
        return None
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _get(api: KubeRest, path: str, kind: str, name: str, optional: bool | None) -> Obj | None:
    try:
        obj = api.get_or_none(path)
    except ApiError as exc:
        raise ConfigError(f"cannot read {kind} {name!r}: {exc}") from exc
    if obj is None and not optional:
        raise ConfigError(f"{kind} {name!r} not found")
    return obj


def _keyed(data: dict[str, bytes] | None, src: Obj) -> Files:
    if data is None:
        return {}
    mode = src.get("defaultMode", 0o644)
    if not src.get("items"):
        return {key: (value, mode) for key, value in data.items()}
    files: Files = {}
    for item in src["items"]:
        if item["key"] not in data:
            if src.get("optional"):
                continue
            raise ConfigError(f"key {item['key']!r} not found in {src.get('name')!r}")
        files[item["path"]] = (data[item["key"]], item.get("mode", mode))
    return files


def _downward(pod: Obj, items: list[Obj], mode: int) -> Files:
    files: Files = {}
    for item in items:
        if "fieldRef" not in item:
            raise ConfigError(f"downwardAPI item {item['path']!r}: only fieldRef is supported")
        value = field_value(pod, item["fieldRef"]["fieldPath"])
        files[item["path"]] = (value.encode(), item.get("mode", mode))
    return files


def atomic_write(target: Path, files: Files, fs_group: int | None) -> None:
    """Write `files` under `target` and switch `..data` to them in one rename."""
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o755)
    fresh = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    for rel, (content, mode) in files.items():
        path = fresh / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
        if fs_group is not None:
            os.chown(path, -1, fs_group)
    fresh.mkdir(exist_ok=True)
    fresh.chmod(0o755)
    link = target / "..data_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(fresh.name)
    previous = (target / "..data").resolve() if (target / "..data").is_symlink() else None
    link.replace(target / "..data")
    for top in {rel.split("/")[0] for rel in files}:
        entry = target / top
        if not entry.is_symlink():
            entry.symlink_to(f"..data/{top}")
    if previous is not None and previous != fresh.resolve():
        shutil.rmtree(previous, ignore_errors=True)
