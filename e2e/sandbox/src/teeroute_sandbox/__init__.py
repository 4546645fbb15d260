"""A real Kubernetes control plane without Docker, for tests and the local demo.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler (built from the Go module
proxy) and kwok run inside a network namespace of their own; simulated nodes mirror real
confidential node pools; a process runner plays the kubelet for pods of our own images.

Entry points: `Sandbox` (cluster.py) for code and pytest fixtures, `teeroute sandbox …`
(cli.py) for people and scripts.
"""

from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.settings import SandboxSettings

__all__ = ["Sandbox", "SandboxSettings"]
