"""The files the kubelet writes for each pod and mounts into its containers: /etc/hosts,
/etc/hostname and /etc/resolv.conf (pure: content from the pod and the node's files).

The sandbox has no cluster DNS, so resolv.conf is the node's, as a kubelet without
`--cluster-dns` gives ClusterFirst pods, with the pod's `dnsConfig` applied.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
CLUSTER_DOMAIN = "cluster.local"


def hostname(pod: Obj) -> str:
    return str(pod["spec"].get("hostname") or pod["metadata"]["name"])[:63]


def hosts_file(pod: Obj) -> str:
    spec, ip = pod["spec"], (pod.get("status") or {}).get("podIP", "")
    name = hostname(pod)
    names = [name]
    if spec.get("subdomain"):
        ns = pod["metadata"]["namespace"]
        names.insert(0, f"{name}.{spec['subdomain']}.{ns}.svc.{CLUSTER_DOMAIN}")
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
        f"{ip}\t{chr(9).join(names)}",
    ]
    aliases = spec.get("hostAliases") or []
    if aliases:
        lines.append("")
        lines.append("# Entries added by HostAliases.")
        lines += [f"{a['ip']}\t{chr(9).join(a.get('hostnames') or [])}" for a in aliases]
    return "\n".join(lines) + "\n"


def resolv_conf(pod: Obj, node_resolv: str) -> str:
    spec = pod["spec"]
    config = spec.get("dnsConfig") or {}
    keep = spec.get("dnsPolicy") != "None"
    servers = [*(_field(node_resolv, "nameserver") if keep else []), *config.get("nameservers", [])]
    searches = [*(_field(node_resolv, "search") if keep else []), *config.get("searches", [])]
    options = [*(_field(node_resolv, "options") if keep else [])]
    options += [
        f"{o['name']}:{o['value']}" if o.get("value") is not None else o["name"]
        for o in config.get("options") or []
    ]
    lines = [f"nameserver {s}" for s in servers]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def _field(text: str, key: str) -> list[str]:
    values: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == key:
            values += words[1:]
    return values
