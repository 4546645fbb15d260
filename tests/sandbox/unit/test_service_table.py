"""The service proxy's table: which ready backends serve each ClusterIP:port (pure)."""

from __future__ import annotations

from typing import Any

from teeroute_sandbox.serviceproxy import table

Obj = dict[str, Any]


def service(name: str, ip: str | None, ports: list[Obj], kind: str = "ClusterIP") -> Obj:
    return {
        "metadata": {"namespace": "ns", "name": name},
        "spec": {"type": kind, "clusterIP": ip, "ports": ports},
    }


def endpoint_slice(service_name: str, ports: list[Obj], endpoints: list[Obj]) -> Obj:
    return {
        "metadata": {"namespace": "ns", "labels": {table.SERVICE_NAME_LABEL: service_name}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }


def ready(ip: str, is_ready: bool | None = True) -> Obj:
    return {"addresses": [ip], "conditions": {} if is_ready is None else {"ready": is_ready}}


def test_named_ports_map_to_the_slice_port_of_the_same_name() -> None:
    services = [
        service(
            "gw",
            "10.96.0.10",
            [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}],
        )
    ]
    slices = [
        endpoint_slice(
            "gw",
            [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9091}],
            [ready("10.244.0.5"), ready("10.244.1.7")],
        )
    ]
    assert table.build(services, slices) == {
        ("10.96.0.10", 80): [("10.244.0.5", 8080), ("10.244.1.7", 8080)],
        ("10.96.0.10", 9090): [("10.244.0.5", 9091), ("10.244.1.7", 9091)],
    }


def test_unready_endpoints_and_other_services_slices_are_left_out() -> None:
    services = [service("gw", "10.96.0.10", [{"port": 80}])]
    slices = [
        endpoint_slice(
            "gw", [{"port": 8080}], [ready("10.244.0.5", False), ready("10.244.0.6", None)]
        ),
        endpoint_slice("other", [{"port": 8080}], [ready("10.244.9.9")]),
    ]
    assert table.build(services, slices) == {("10.96.0.10", 80): [("10.244.0.6", 8080)]}


def test_headless_external_and_udp_services_get_no_frontend() -> None:
    services = [
        service("headless", "None", [{"port": 80}]),
        service("ext", None, [{"port": 80}], kind="ExternalName"),
        service("dns", "10.96.0.53", [{"port": 53, "protocol": "UDP"}]),
    ]
    assert table.build(services, []) == {}


def test_a_service_without_endpoints_has_an_empty_backend_list() -> None:
    assert table.build([service("gw", "10.96.0.10", [{"port": 80}])], []) == {
        ("10.96.0.10", 80): []
    }
