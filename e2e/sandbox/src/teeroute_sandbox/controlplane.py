"""The control-plane components and their command lines (pure: no I/O).

Order matters: etcd, then the apiserver, then what talks to it. Each component runs as a
daemon inside the sandbox's network namespace (see daemons.py); `Component.argv` says how.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from teeroute_sandbox import pki as pkimod
from teeroute_sandbox.layout import Layout
from teeroute_sandbox.settings import SandboxSettings

ETCD_CLIENT_URL = "http://127.0.0.1:2379"
ETCD_PEER_URL = "http://127.0.0.1:2380"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


COMPONENT_NAMES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "runner",
    "service-proxy",
)
"""In start order; `down` stops them in reverse."""


@dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]

    def fingerprint(self) -> str:
        """Changes when the component must be restarted: other flags, another binary (paths
        are content-hashed cache entries) or, for the runner and the proxy, other code."""
        digest = hashlib.sha256("\0".join(self.argv).encode())
        if self.name in ("runner", "service-proxy"):
            for source in sorted(Path(__file__).parent.rglob("*.py")):
                digest.update(source.read_bytes())
        return digest.hexdigest()[:16]


def components(settings: SandboxSettings, layout: Layout, bins: dict[str, Path]) -> list[Component]:
    pki = pkimod.Pki(layout.pki)
    return [
        Component("etcd", etcd_argv(bins["etcd"], layout)),
        Component("kube-apiserver", apiserver_argv(bins["kube-apiserver"], settings, pki)),
        Component(
            "kube-controller-manager",
            controller_manager_argv(bins["kube-controller-manager"], settings, pki),
        ),
        Component("kube-scheduler", scheduler_argv(bins["kube-scheduler"], pki)),
        Component("kwok", kwok_argv(bins["kwok"], pki)),
        Component("runner", runner_argv(settings, layout)),
        Component("service-proxy", service_proxy_argv(settings, layout)),
    ]


def etcd_argv(binary: Path, layout: Layout) -> tuple[str, ...]:
    return (
        str(binary),
        "--name=sandbox",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={ETCD_CLIENT_URL}",
        f"--advertise-client-urls={ETCD_CLIENT_URL}",
        f"--listen-peer-urls={ETCD_PEER_URL}",
        f"--initial-advertise-peer-urls={ETCD_PEER_URL}",
        f"--initial-cluster=sandbox={ETCD_PEER_URL}",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--unsafe-no-fsync",  # a test cluster: speed over durability
        "--log-level=warn",
    )


def apiserver_argv(binary: Path, settings: SandboxSettings, pki: pkimod.Pki) -> tuple[str, ...]:
    return (
        str(binary),
        f"--etcd-servers={ETCD_CLIENT_URL}",
        "--bind-address=0.0.0.0",
        "--secure-port=443",
        f"--advertise-address={settings.advertise_address}",
        f"--service-cluster-ip-range={settings.service_cidr}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--cert-dir={pki.dir / 'apiserver-generated'}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--profiling=false",
        "--event-ttl=1h",
    )


# Client rate limits of the controller-manager and the scheduler. The defaults (20 and 50
# requests/s) are sized for shared production control planes; at 20/s the ReplicaSet
# controller alone needs ~150 s to create 2,000 pods and post its status, which is what the
# operator-scale benchmark measured instead of the operator. Large clusters raise them too.
CONTROLLER_QPS = 200
CONTROLLER_BURST = 400


def _controller_base(binary: Path, kubeconfig: Path) -> tuple[str, ...]:
    """What the controller-manager and the scheduler share: their identity for the
    apiserver and for delegated authn/z, a loopback-only port, no leader election, and
    their client rate limits."""
    return (
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--profiling=false",
        f"--kube-api-qps={CONTROLLER_QPS}",
        f"--kube-api-burst={CONTROLLER_BURST}",
    )


def controller_manager_argv(
    binary: Path, settings: SandboxSettings, pki: pkimod.Pki
) -> tuple[str, ...]:
    return (
        *_controller_base(binary, pki.kubeconfig(pkimod.CONTROLLER_MANAGER)),
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={settings.service_cidr}",
        "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
        "--concurrent-deployment-syncs=20",
        "--concurrent-replicaset-syncs=20",
    )


def scheduler_argv(binary: Path, pki: pkimod.Pki) -> tuple[str, ...]:
    return _controller_base(binary, pki.kubeconfig(pkimod.SCHEDULER))


def kwok_argv(binary: Path, pki: pkimod.Pki) -> tuple[str, ...]:
    return (
        str(binary),
        f"--kubeconfig={pki.kubeconfig(pkimod.NODES)}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-lease-duration-seconds=40",
        "--server-address=127.0.0.1:10247",
    )


def runner_argv(settings: SandboxSettings, layout: Layout) -> tuple[str, ...]:
    return (
        sys.executable,
        "-m",
        "teeroute_sandbox.runner",
        f"--kubeconfig={pkimod.Pki(layout.pki).kubeconfig(pkimod.NODES)}",
        f"--state-dir={layout.root}",
        f"--netns={settings.netns}",
        f"--image-store={settings.image_store}",
        f"--rootfs-cache={settings.rootfs_cache}",
    )


def service_proxy_argv(settings: SandboxSettings, layout: Layout) -> tuple[str, ...]:
    return (
        sys.executable,
        "-m",
        "teeroute_sandbox.serviceproxy",
        f"--kubeconfig={layout.kubeconfig}",
        f"--kubernetes-ip={settings.kubernetes_service_ip}",
    )
