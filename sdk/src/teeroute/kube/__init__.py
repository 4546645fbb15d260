"""A small async Kubernetes API client shared by the operator and the gateway.

config.py   where the cluster is and how to authenticate (kubeconfig or in-cluster)
client.py   JSON over HTTPS: get, list, create, server-side apply, status patches, delete
paths.py    API paths of the kinds teeroute reads and writes
"""

from teeroute.kube.client import ApiError, Kube
from teeroute.kube.config import ClusterConfig, KubeConfigError, load_config

__all__ = ["ApiError", "ClusterConfig", "Kube", "KubeConfigError", "load_config"]
