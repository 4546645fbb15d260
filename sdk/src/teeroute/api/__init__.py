"""The teeroute API (group `teeroute.dev`, version `v1alpha1`): typed models of MinerPool and
Route, from which the CRDs in crds/ are generated (crdgen.py). The operator and the gateway read
and write these objects; they are the contract between them."""

from teeroute.api.minerpool import MinerPool, MinerPoolSpec, MinerPoolStatus
from teeroute.api.route import Route, RouteSpec, RouteStatus

GROUP = "teeroute.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "MinerPool",
    "MinerPoolSpec",
    "MinerPoolStatus",
    "Route",
    "RouteSpec",
    "RouteStatus",
]
