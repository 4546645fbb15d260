"""A pod's network: its own namespace with the pod IP, joined to the sandbox namespace.

Point-to-point, as Calico does it: inside the pod, `eth0` holds `<podIP>/32` and a default
route via the link-local 169.254.1.1; in the sandbox namespace the veth's other end answers
ARP for it (proxy_arp) and a /32 route leads back to the pod. So pods reach each other,
the apiserver and the sandbox namespace, and every program may listen on 0.0.0.0 as in a
container. Called by the runner, which itself runs inside the sandbox namespace.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from teeroute_sandbox import netns

GATEWAY = "169.254.1.1"


def pod_netns(prefix: str, uid: str) -> str:
    return f"{prefix}{uid}"


def host_link(uid: str) -> str:
    """The sandbox-side veth name (Linux allows 15 characters)."""
    return "tr" + hashlib.sha256(uid.encode()).hexdigest()[:11]


def create(prefix: str, uid: str, pod_ip: str) -> str:
    """Create (or re-create) the pod's namespace; return its name."""
    name = pod_netns(prefix, uid)
    link = host_link(uid)
    delete(prefix, uid)
    netns.create(name)
    netns.ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name)
    Path(f"/proc/sys/net/ipv4/conf/{link}/proxy_arp").write_text("1")
    netns.ip("link", "set", link, "up")
    netns.ip("addr", "add", f"{pod_ip}/32", "dev", "eth0", netns=name)
    netns.ip("link", "set", "eth0", "up", netns=name)
    netns.ip("route", "add", GATEWAY, "dev", "eth0", "scope", "link", netns=name)
    netns.ip("route", "add", "default", "via", GATEWAY, "dev", "eth0", netns=name)
    netns.ip("route", "replace", f"{pod_ip}/32", "dev", link)
    return name


def delete(prefix: str, uid: str) -> None:
    """Remove the namespace (its veth end goes with it, and so the /32 route)."""
    netns.ip("link", "delete", host_link(uid), check=False)
    netns.delete(pod_netns(prefix, uid))
