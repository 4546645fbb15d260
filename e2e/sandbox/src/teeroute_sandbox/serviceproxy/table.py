"""Which backends serve which ClusterIP:port: a pure function of Services and EndpointSlices.

Only TCP ports of Services with a ClusterIP (not headless, not ExternalName). A Service port
matches a slice port by name (both unnamed when the Service has one port), as kube-proxy
matches them; the slice port's number is the target (the controller resolved named
targetPorts). Endpoints count when `conditions.ready` is not false.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]
Frontend = tuple[str, int]
Backend = tuple[str, int]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def frontends(service: Obj) -> list[tuple[Frontend, str]]:
    """(clusterIP, port) and the port's name, for each TCP port of a ClusterIP Service."""
    spec = service.get("spec") or {}
    ip = spec.get("clusterIP")
    if spec.get("type", "ClusterIP") == "ExternalName" or not ip or ip == "None":
        return []
    return [
        ((ip, int(port["port"])), port.get("name") or "")
        for port in spec.get("ports") or []
        if port.get("protocol", "TCP") == "TCP"
    ]


def backends(slices: Iterable[Obj], port_name: str) -> list[Backend]:
    """Ready addresses and their port named `port_name`, from one Service's slices."""
    found: list[Backend] = []
    for piece in slices:
        if piece.get("addressType", "IPv4") != "IPv4":
            continue
        numbers = [
            int(p["port"])
            for p in piece.get("ports") or []
            if (p.get("name") or "") == port_name
            and p.get("port")
            and p.get("protocol", "TCP") == "TCP"
        ]
        for endpoint in piece.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            found += [
                (address, number)
                for address in endpoint.get("addresses") or []
                for number in numbers
            ]
    return sorted(set(found))


def build(services: Iterable[Obj], slices: Iterable[Obj]) -> dict[Frontend, list[Backend]]:
    by_service: dict[tuple[str, str], list[Obj]] = {}
    for piece in slices:
        meta = piece.get("metadata") or {}
        name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if name:
            by_service.setdefault((meta.get("namespace", ""), name), []).append(piece)
    table: dict[Frontend, list[Backend]] = {}
    for service in services:
        meta = service.get("metadata") or {}
        mine = by_service.get((meta.get("namespace", ""), meta.get("name", "")), [])
        for frontend, port_name in frontends(service):
            table[frontend] = backends(mine, port_name)
    return table
