"""One sandbox cluster: bring it up, report on it, run commands in it, tear it down.

`up` is idempotent: it starts only what is not running, so it also repairs a sandbox whose
component died. `down` stops every process in the sandbox's namespaces (control plane,
runner, pods) and deletes the namespaces; only the logs stay, for post-mortems.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from teeroute_sandbox import controlplane, daemons, gobuild, kube, netns, nodepools, readiness
from teeroute_sandbox import pki as pkimod
from teeroute_sandbox.errors import (
    NamespacesNotPermitted,
    NotRunning,
    StartupFailed,
    UnknownComponent,
)
from teeroute_sandbox.layout import Layout
from teeroute_sandbox.restclient import ApiError, KubeRest
from teeroute_sandbox.runner import podnet
from teeroute_sandbox.settings import SandboxSettings

Progress = Callable[[str], None]
COMPONENT_NAMES = controlplane.COMPONENT_NAMES


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    rss_bytes: int | None = None


@dataclass(frozen=True)
class Status:
    name: str
    components: list[ComponentStatus]
    server_version: str | None
    nodes_ready: int
    nodes_total: int
    kubeconfig: Path

    @property
    def healthy(self) -> bool:
        return all(c.pid for c in self.components) and self.server_version is not None


class Sandbox:
    def __init__(
        self, settings: SandboxSettings | None = None, progress: Progress | None = None
    ) -> None:
        self.settings = settings or SandboxSettings()
        self.layout = Layout(self.settings.state_dir)
        self.pki = pkimod.Pki(self.layout.pki)
        self._say = progress or _stderr

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def netns(self) -> str:
        return self.settings.netns

    def up(self) -> Path:
        """Start whatever is not running; return the admin kubeconfig's path."""
        _require_root()
        bins = gobuild.ensure_built(self.settings.cache_dir, self._say)
        with self._locked():
            self._prepare_network()
            self._prepare_files(bins)
            for component in controlplane.components(self.settings, self.layout, bins):
                self._ensure_running(component)
            self._ensure_nodes(bins)
        return self.kubeconfig

    def status(self) -> Status:
        pids = {n: daemons.running(self.layout, n) for n in COMPONENT_NAMES}
        comps = [
            ComponentStatus(n, pid, daemons.rss_bytes(pid) if pid else None)
            for n, pid in pids.items()
        ]
        version, ready, total = None, 0, 0
        if netns.exists(self.netns) and self.kubeconfig.exists():
            with contextlib.suppress(ApiError, OSError, httpx.HTTPError):
                version, ready, total = kube.in_netns(self.netns, self._cluster_facts)
        return Status(self.settings.name, comps, version, ready, total, self.kubeconfig)

    def down(self) -> None:
        with self._locked():
            for name in reversed(COMPONENT_NAMES):
                daemons.stop(self.layout, name)
            leftovers: list[int] = []
            for name in [*netns.names(self.pod_netns_prefix), self.netns]:
                leftovers += netns.pids(name)
            # A caller inside the namespace (a test session that entered it) is spared.
            daemons.terminate([p for p in leftovers if p != os.getpid()], grace_s=5)
            for name in [*netns.names(self.pod_netns_prefix), self.netns]:
                netns.delete(name)
            for path in self.layout.root.iterdir():
                if path != self.layout.logs and path != self.layout.lock:
                    _remove(path)

    def stop_component(self, name: str, grace_s: float = 0.0) -> None:
        """Stop one component: an outage until `start_component` (or `up`). By default as a
        crash would (SIGKILL at once); `grace_s` gives it that long after SIGTERM first (the
        apiserver's graceful shutdown takes about 10 s)."""
        component_named(name)
        with self._locked():
            daemons.stop(self.layout, name, grace_s)

    def start_component(self, name: str) -> None:
        """Start one component, with its usual flags, unless it runs; return once ready."""
        bins = gobuild.ensure_built(self.settings.cache_dir, self._say)
        wanted = component_named(name)
        with self._locked():
            for component in controlplane.components(self.settings, self.layout, bins):
                if component.name == wanted:
                    self._ensure_running(component)

    def restart(self, name: str, grace_s: float = 0.0) -> None:
        """Stop one component (e.g. etcd or kube-apiserver; see `stop_component`) and start it
        again; what talks to it must recover on its own. Returns once it is ready."""
        self.stop_component(name, grace_s)
        self.start_component(name)

    def exec(self, argv: list[str]) -> int:
        """Run `argv` where it reaches the apiserver and pod IPs, KUBECONFIG set."""
        if not netns.exists(self.netns) or not self.kubeconfig.exists():
            raise NotRunning(f"sandbox {self.settings.name!r} is not up: run `teeroute sandbox up`")
        return subprocess.call(netns.shell_argv(self.netns, ["env", *self.exec_env(), *argv]))

    def exec_env(self) -> list[str]:
        bindir = self.layout.root / "bin"
        return [f"KUBECONFIG={self.kubeconfig}", f"PATH={bindir}:{os.environ.get('PATH', '')}"]

    @property
    def pod_netns_prefix(self) -> str:
        return f"{self.netns}-pod-"

    # -- steps of `up` -------------------------------------------------------------------

    def _prepare_network(self) -> None:
        netns.create(self.netns)
        present = netns.ip("-4", "addr", "show", "dev", "lo", netns=self.netns)
        # The pods' gateway is local here, so the pods' ARP for it is answered.
        for address in (
            self.settings.advertise_address,
            self.settings.kubernetes_service_ip,
            podnet.GATEWAY,
        ):
            if f"inet {address}/" not in present:
                netns.ip("addr", "add", f"{address}/32", "dev", "lo", netns=self.netns)
        netns.sysctl(self.netns, "net.ipv4.ip_forward", "1")

    def _prepare_files(self, bins: dict[str, Path]) -> None:
        for directory in (self.layout.root, self.layout.logs, self.layout.pids, self.layout.pods):
            directory.mkdir(parents=True, exist_ok=True)
        s = self.settings
        pkimod.ensure(
            self.pki,
            s.apiserver_url,
            ips=[s.advertise_address, s.kubernetes_service_ip, "127.0.0.1"],
            dns=[
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ],
        )
        shutil.copyfile(self.pki.kubeconfig(pkimod.ADMIN), self.kubeconfig)
        self.kubeconfig.chmod(0o600)
        bindir = self.layout.root / "bin"  # the built kubectl & co. first on `exec`'s PATH
        bindir.mkdir(exist_ok=True)
        for name, path in bins.items():
            link = bindir / name
            if not link.exists() or link.resolve() != path:
                link.unlink(missing_ok=True)
                link.symlink_to(path)

    def _ensure_running(self, component: controlplane.Component) -> None:
        fingerprint = component.fingerprint()
        if daemons.running(self.layout, component.name):
            if daemons.fingerprint(self.layout, component.name) == fingerprint:
                return
            self._say(f"restarting {component.name}: its binary, flags or code changed")
            daemons.stop(self.layout, component.name)
        else:
            self._say(f"starting {component.name}")
        argv = netns.exec_argv(self.netns, list(component.argv))
        daemons.spawn(self.layout, component.name, argv, fingerprint)
        self._wait(component.name, self._probe(component.name))

    def _probe(self, name: str) -> readiness.Probe:
        probes = {
            "etcd": readiness.tcp("127.0.0.1", 2379),
            "kube-apiserver": readiness.apiserver_ready(self.pki, self.settings.advertise_address),
            "kube-controller-manager": readiness.tcp("127.0.0.1", 10257),
            "kube-scheduler": readiness.tcp("127.0.0.1", 10259),
            "kwok": readiness.tcp("127.0.0.1", 10247),
        }
        return probes.get(name, readiness.always)

    def _wait(self, name: str, probe: readiness.Probe) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while time.monotonic() < deadline:
            if not daemons.running(self.layout, name):
                raise StartupFailed(f"{name} exited during start-up:\n{self._log_tail(name)}")
            if kube.in_netns(self.netns, probe):
                return
            time.sleep(0.2)
        raise StartupFailed(
            f"{name} was not ready after {self.settings.ready_timeout_s:.0f} s "
            f"(log: {self.layout.log(name)}):\n{self._log_tail(name)}"
        )

    def _log_tail(self, name: str, lines: int = 25) -> str:
        try:
            return "\n".join(
                self.layout.log(name).read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return "(no log)"

    def _ensure_nodes(self, bins: dict[str, Path]) -> None:
        version = _kubernetes_version(bins)
        manifests = nodepools.node_manifests(self.settings.pod_cidr, version)
        kube.in_netns(self.netns, lambda: self._create_nodes(manifests))
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while time.monotonic() < deadline:
            _, ready, total = kube.in_netns(self.netns, self._cluster_facts)
            if ready == total == len(manifests):
                self._say(f"{ready} nodes Ready")
                return
            time.sleep(0.5)
        raise StartupFailed(f"nodes did not become Ready (log: {self.layout.log('kwok')})")

    def _create_nodes(self, manifests: list[dict[str, Any]]) -> None:
        api = KubeRest(self.kubeconfig)
        try:
            existing = {n["metadata"]["name"] for n in api.get("/api/v1/nodes")["items"]}
            for manifest in manifests:
                if manifest["metadata"]["name"] not in existing:
                    api.post("/api/v1/nodes", manifest)
        finally:
            api.close()

    def _cluster_facts(self) -> tuple[str, int, int]:
        api = KubeRest(self.kubeconfig, timeout_s=5)
        try:
            version = str(api.get("/version")["gitVersion"])
            nodes = api.get("/api/v1/nodes")["items"]
        finally:
            api.close()
        return version, sum(1 for n in nodes if node_schedulable(n)), len(nodes)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with self.layout.lock.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def component_named(name: str) -> str:
    """`name` when it is one of the sandbox's components, else UnknownComponent."""
    if name not in COMPONENT_NAMES:
        raise UnknownComponent(
            f"no sandbox component {name!r}; the components are {', '.join(COMPONENT_NAMES)}"
        )
    return name


NOT_READY_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


def node_schedulable(node: dict[str, Any]) -> bool:
    """Ready, and the node-lifecycle controller has lifted the taints it puts on new nodes
    (until then a freshly Ready node still turns pods away)."""
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    taints = {t["key"] for t in (node.get("spec") or {}).get("taints") or []}
    return ready and not taints & NOT_READY_TAINTS


def _kubernetes_version(bins: dict[str, Path]) -> str:
    out = subprocess.run(
        [str(bins["kube-apiserver"]), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[-1]


def _require_root() -> None:
    if os.geteuid() != 0:
        raise NamespacesNotPermitted(
            "the sandbox creates network and mount namespaces and must run as root "
            "(in CI and on dev machines here you are root; elsewhere use sudo)"
        )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _stderr(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)
