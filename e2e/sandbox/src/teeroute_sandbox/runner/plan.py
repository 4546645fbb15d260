"""Pod + container + image -> a launch plan (pure: the API lookups are passed in).

Follows the kubelet's rules: `command` replaces the image ENTRYPOINT and drops its CMD,
`args` replaces CMD; `$(VAR)` expands from earlier env (`$$` escapes); env is image env,
then service links, then `envFrom`, then `env`; downward-API fields, Secret and ConfigMap
keys resolve here; a missing non-optional reference is a `ConfigError` (the kubelet's
CreateContainerConfigError), reported in the pod's status instead of starting anything.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from teeroute_sandbox.runner.errors import ConfigError as ConfigError  # re-exported
from teeroute_sandbox.runner.images import ImageConfig

Obj = dict[str, Any]


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    uid: int
    gid: int
    groups: list[int]
    working_dir: str
    hostname: str
    read_only_root: bool
    log_path: str = ""
    reveal: list[str] = field(default_factory=list)
    """Host mode: host paths the container must reach (the interpreter the runner's host
    images use), kept visible under volumes mounted above them and traversable by a
    non-root user; see launcher.keep_visible and launcher._reveal."""
    rootfs: str = ""
    """Image mode: the unpacked image root (overlay lower layer); "" runs a host process."""
    container_dir: str = ""
    """Image mode: holds the container's writable layer (fresh on each start)."""
    etc_mounts: list[Mount] = field(default_factory=list)
    """Image mode: /etc/hosts, /etc/hostname, /etc/resolv.conf as the kubelet writes them."""
    no_new_privileges: bool = False
    """allowPrivilegeEscalation: false (PR_SET_NO_NEW_PRIVS, as runc sets it)."""
    image_id: str = ""
    """Image mode: `<ref>@<manifest digest>`, reported as the container's imageID."""
    join_pid: int = 0
    """Exec probes: run inside this running container's namespaces and root instead."""

    def to_json(self) -> Obj:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Obj) -> LaunchPlan:
        return cls(
            **{
                **raw,
                "mounts": [Mount(**m) for m in raw["mounts"]],
                "etc_mounts": [Mount(**m) for m in raw.get("etc_mounts") or []],
            }
        )


@dataclass(frozen=True)
class Lookups:
    """What the plan needs from the API, fetched by the caller."""

    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    service_env: dict[str, str] = field(default_factory=dict)
    volume_dirs: dict[str, str] = field(default_factory=dict)


def build_plan(pod: Obj, container: Obj, image: ImageConfig, lookups: Lookups) -> LaunchPlan:
    env = dict(image.env)
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["HOSTNAME"] = pod["metadata"]["name"]
    env.update(lookups.service_env)
    env.update(_env_from(container, lookups))
    for var in container.get("env") or []:
        env[var["name"]] = _env_value(var, pod, container, env, lookups)
    uid, gid, groups, read_only_root = _identity(pod, container, image)
    escalation = (container.get("securityContext") or {}).get("allowPrivilegeEscalation")
    return LaunchPlan(
        argv=[expand(a, env) for a in _argv(container, image)],
        env=env,
        mounts=_mounts(container, lookups),
        uid=uid,
        gid=gid,
        groups=groups,
        working_dir=container.get("workingDir") or image.working_dir or "/",
        hostname=pod["metadata"]["name"][:63],
        read_only_root=read_only_root,
        no_new_privileges=escalation is False,
    )


def _argv(container: Obj, image: ImageConfig) -> list[str]:
    if container.get("command"):
        return [*container["command"], *(container.get("args") or [])]
    cmd = container["args"] if container.get("args") else list(image.cmd)
    argv = [*image.entrypoint, *cmd]
    if not argv:
        raise ConfigError(
            "no command specified: the image has no entrypoint and the container sets no command"
        )
    return argv


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: unknown names stay as written, `$$` is a `$`."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR.sub(one, text)


def _env_from(container: Obj, lookups: Lookups) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, table in (("secretRef", lookups.secrets), ("configMapRef", lookups.config_maps)):
            ref = source.get(kind)
            if not ref:
                continue
            data = table.get(ref["name"])
            if data is None:
                if not ref.get("optional"):
                    raise ConfigError(f"{kind} {ref['name']!r} not found")
                continue
            env.update({prefix + k: v for k, v in data.items()})
    return env


def _env_value(var: Obj, pod: Obj, container: Obj, env: dict[str, str], lookups: Lookups) -> str:
    if "value" in var or "valueFrom" not in var:
        return expand(var.get("value", ""), env)
    source = var["valueFrom"]
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        return _resource_value(container, source["resourceFieldRef"])
    for kind, table in (
        ("secretKeyRef", lookups.secrets),
        ("configMapKeyRef", lookups.config_maps),
    ):
        if kind in source:
            ref = source[kind]
            value = (table.get(ref["name"]) or {}).get(ref["key"])
            if value is None:
                if ref.get("optional"):
                    return ""
                raise ConfigError(
                    f"{kind} {ref['name']}/{ref['key']} for env {var['name']} not found"
                )
            return value
    raise ConfigError(f"env {var['name']}: unsupported valueFrom {sorted(source)}")


_LABEL_PATH = re.compile(r"metadata\.(labels|annotations)\['(.+)'\]")


def field_value(pod: Obj, path: str) -> str:
    """A downward-API `fieldPath` of the pod."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
    }
    if path in simple:
        return simple[path] or ""
    match = _LABEL_PATH.fullmatch(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldPath {path!r}")


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SCALE = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(text: str) -> float:
    match = _QUANTITY.match(str(text))
    if not match or match.group(2) not in _SCALE:
        raise ConfigError(f"cannot read quantity {text!r}")
    return float(match.group(1)) * _SCALE[match.group(2)]


def _resource_value(container: Obj, ref: Obj) -> str:
    section, _, name = ref["resource"].partition(".")
    value = ((container.get("resources") or {}).get(section) or {}).get(name)
    if value is None:
        return "0"
    divisor = quantity(ref.get("divisor", "1"))
    amount = quantity(value) / divisor
    return str(int(-(-amount // 1)))  # the kubelet rounds up


def _mounts(container: Obj, lookups: Lookups) -> list[Mount]:
    mounts = []
    for mount in container.get("volumeMounts") or []:
        source = lookups.volume_dirs.get(mount["name"])
        if source is None:
            raise ConfigError(f"volume {mount['name']!r} is not available to the runner")
        if mount.get("subPath"):
            source = f"{source}/{mount['subPath']}"
        mounts.append(Mount(source, mount["mountPath"], bool(mount.get("readOnly"))))
    return sorted(mounts, key=lambda m: m.target.count("/"))


def _identity(pod: Obj, container: Obj, image: ImageConfig) -> tuple[int, int, list[int], bool]:
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser", image.user))
    # The image user's group goes with the image user (a runtime looks up the gid of
    # another runAsUser in the image's /etc/passwd; ours are built with uid == gid).
    image_gid = image.group if image.group is not None and uid == image.user else 0
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", image_gid))
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot", False))
    if non_root and uid == 0:
        raise ConfigError("container has runAsNonRoot and image will run as root")
    groups = [
        g
        for g in [pod_sc.get("fsGroup"), *(pod_sc.get("supplementalGroups") or [])]
        if g is not None
    ]
    return int(uid), int(gid), [int(g) for g in groups], bool(sc.get("readOnlyRootFilesystem"))


def service_env(services: list[Obj]) -> dict[str, str]:
    """The docker-links style variables the kubelet sets for each Service."""
    env: dict[str, str] = {}
    for svc in services:
        ip = svc["spec"].get("clusterIP")
        ports = svc["spec"].get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        name = svc["metadata"]["name"].upper().replace("-", "_")
        first = ports[0]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(first["port"])
        env[f"{name}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            proto = port.get("protocol", "TCP")
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                    port["port"]
                )
            key = f"{name}_PORT_{port['port']}_{proto}"
            env[key] = f"{proto.lower()}://{ip}:{port['port']}"
            env[f"{key}_PROTO"] = proto.lower()
            env[f"{key}_PORT"] = str(port["port"])
            env[f"{key}_ADDR"] = ip
    return env
