"""The cluster source's assembly (pure): which endpoints the gateway may route to, given the
objects the watches cached, and with which attestation details."""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from teeroute import admission
from teeroute.admission import AdmittedEndpoint, build_slice, rfc3339
from teeroute_gateway.catalog import Inventory, build_catalog
from teeroute_gateway.sources.kube_inventory import inventory_from

Obj = dict[str, Any]
NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
NS = "miners"
MEASUREMENT = "ab" * 48


def at(seconds: int) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def pool(name: str = "llama", ns: str = NS, external: dict[str, str] | None = None) -> Obj:
    spec: Obj = {
        "models": [{"name": "meta-llama/Llama-3.1-8B-Instruct"}],
        "tee": {"type": "sev-snp"},
        "pricing": {"inputPerMillion": "0.10", "outputPerMillion": "0.20"},
    }
    if external is None:
        spec |= {
            "placement": {"profile": "aks"},
            "images": {"agent": "a:1", "engine": "e:1"},
        }
    else:
        spec["endpoints"] = [{"name": n, "url": u} for n, u in external.items()]
    return {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "MinerPool",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
        "spec": spec,
    }


def route(name: str = "llama", ns: str = NS, model: str = "llama", **spec: Any) -> Obj:
    return {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"model": model, "backends": [{"pool": "llama"}], **spec},
    }


def attested_slice(
    entries: list[tuple[str, str, int]], pool_name: str = "llama", ns: str = NS
) -> Obj:
    """(address, pod, seconds until expiry) per entry."""
    return build_slice(
        namespace=ns,
        pool=pool_name,
        port=8443,
        endpoints=[AdmittedEndpoint(a, 8443, at(s), pod=p) for a, p, s in entries],
    )


def pod(name: str, ip: str, expires_in: int = 300, notes: dict[str, str] | None = None) -> Obj:
    annotations = {
        admission.ATTESTED_AT: rfc3339(at(-30)),
        admission.EXPIRES_AT: rfc3339(at(expires_in)),
        admission.TEE: "sev-snp",
        admission.MEASUREMENT: MEASUREMENT,
        admission.CHIP_ID: f"chip-{name}",
        admission.HPKE_KEY: "11" * 32,
        admission.SIGNING_KEY: "22" * 32,
        **(notes or {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "status": {"podIP": ip},
    }


def lease(name: str, url: str, expires_in: int, **extra: str) -> Obj:
    return {
        "name": name,
        "url": url,
        "attestedAt": rfc3339(at(-10)),
        "expiresAt": rfc3339(at(expires_in)),
        "tee": "tdx",
        "measurement": MEASUREMENT,
        "chipId": f"chip-{name}",
        "hpkeKeySha256": "33" * 32,
        "signingKeySha256": "44" * 32,
        **extra,
    }


def external_pool(leases: list[Obj], **endpoints: str) -> Obj:
    obj = pool("ext", external=endpoints or {"m1": "https://m1.example:8443/"})
    obj["status"] = {"endpoints": leases}
    return obj


@dataclass
class Case:
    id: str
    routes: list[Obj] = field(default_factory=list)
    pools: list[Obj] = field(default_factory=lambda: [pool()])
    slices: list[Obj] = field(default_factory=list)
    pods: list[Obj] = field(default_factory=list)
    namespaces: tuple[str, ...] = ()
    expected: dict[str, set[str]] = field(default_factory=dict)
    """Pool key -> endpoint keys."""


CASES = [
    Case(
        "fresh_entries_with_known_pods_are_admitted",
        slices=[attested_slice([("10.1.0.1", "p1", 60), ("10.1.0.2", "p2", 60)])],
        pods=[pod("p1", "10.1.0.1"), pod("p2", "10.1.0.2")],
        expected={"miners/llama": {"miners/llama/p1", "miners/llama/p2"}},
    ),
    Case(
        "expired_slice_entry_is_dropped",
        slices=[attested_slice([("10.1.0.1", "p1", 60), ("10.1.0.2", "p2", -1)])],
        pods=[pod("p1", "10.1.0.1"), pod("p2", "10.1.0.2")],
        expected={"miners/llama": {"miners/llama/p1"}},
    ),
    Case(
        "entry_of_an_unknown_pod_is_kept",
        slices=[attested_slice([("10.1.0.1", "p1", 60)])],
        expected={"miners/llama": {"miners/llama/p1"}},
    ),
    Case(
        "pod_whose_own_verdict_expired_is_dropped",
        slices=[attested_slice([("10.1.0.1", "p1", 60)])],
        pods=[pod("p1", "10.1.0.1", expires_in=-5)],
        expected={"miners/llama": set()},
    ),
    Case(
        "pod_without_a_verdict_expiry_is_dropped",
        slices=[attested_slice([("10.1.0.1", "p1", 60)])],
        pods=[pod("p1", "10.1.0.1", notes={admission.EXPIRES_AT: ""})],
        expected={"miners/llama": set()},
    ),
    Case(
        "pod_whose_chip_changed_is_dropped",
        slices=[attested_slice([("10.1.0.1", "p1", 60)])],
        pods=[pod("p1", "10.1.0.1", notes={admission.CHIP_CHANGED: "chip-a -> chip-b"})],
        expected={"miners/llama": set()},
    ),
    Case(
        "pod_with_another_ip_than_listed_is_dropped",
        slices=[attested_slice([("10.1.0.1", "p1", 60)])],
        pods=[pod("p1", "10.1.0.9")],
        expected={"miners/llama": set()},
    ),
    Case(
        "slice_of_an_unknown_pool_is_ignored",
        slices=[attested_slice([("10.1.0.1", "p1", 60)], pool_name="other")],
        expected={"miners/llama": set()},
    ),
    Case(
        "slice_in_another_namespace_than_the_pool_is_ignored",
        slices=[attested_slice([("10.1.0.1", "p1", 60)], ns="elsewhere")],
        expected={"miners/llama": set()},
    ),
    Case(
        "external_endpoints_with_live_leases_are_admitted",
        pools=[
            external_pool(
                [
                    lease("m1", "https://m1.example:8443/", 60),
                    lease("m2", "https://m2.example", 60),
                ],
                m1="https://m1.example:8443/",
                m2="https://m2.example",
            )
        ],
        expected={"miners/ext": {"miners/ext/m1", "miners/ext/m2"}},
    ),
    Case(
        "external_endpoint_with_chip_changed_is_excluded",
        pools=[
            external_pool(
                [
                    lease("m1", "https://m1.example", 60, chipChanged="chip-a -> chip-b"),
                    lease("m2", "https://m2.example", 60),
                ],
                m1="https://m1.example",
                m2="https://m2.example",
            )
        ],
        expected={"miners/ext": {"miners/ext/m2"}},
    ),
    Case(
        "external_endpoint_with_expired_lease_is_excluded",
        pools=[external_pool([lease("m1", "https://m1.example:8443/", -1)])],
        expected={"miners/ext": set()},
    ),
    Case(
        "lease_for_a_url_the_spec_no_longer_names_is_excluded",
        pools=[external_pool([lease("m1", "https://old.example", 60)], m1="https://new.example")],
        expected={"miners/ext": set()},
    ),
    Case(
        "lease_for_an_endpoint_removed_from_the_spec_is_excluded",
        pools=[external_pool([lease("gone", "https://gone.example", 60)])],
        expected={"miners/ext": set()},
    ),
    Case(
        "namespace_filter_keeps_only_the_watched_namespaces",
        pools=[pool(), pool(ns="other")],
        slices=[
            attested_slice([("10.1.0.1", "p1", 60)]),
            attested_slice([("10.2.0.1", "p1", 60)], ns="other"),
        ],
        namespaces=(NS,),
        expected={"miners/llama": {"miners/llama/p1"}},
    ),
    Case(
        "without_a_namespace_filter_every_namespace_counts",
        pools=[pool(), pool(ns="other")],
        slices=[
            attested_slice([("10.1.0.1", "p1", 60)]),
            attested_slice([("10.2.0.1", "p1", 60)], ns="other"),
        ],
        expected={"miners/llama": {"miners/llama/p1"}, "other/llama": {"other/llama/p1"}},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_admitted_endpoints(case: Case) -> None:
    inventory = inventory_from(
        case.routes, case.pools, case.slices, case.pods, NOW, namespaces=case.namespaces
    )
    assert {k: {e.key for e in v} for k, v in inventory.endpoints.items()} == case.expected
    for endpoints in inventory.endpoints.values():
        assert all(e.admitted(NOW) for e in endpoints)


def test_pod_endpoint_carries_the_pods_verdict_and_the_earlier_expiry() -> None:
    slice_ = attested_slice([("10.1.0.1", "p1", 60)])
    (endpoint,) = inventory_from(
        [], [pool()], [slice_], [pod("p1", "10.1.0.1", 30)], NOW
    ).endpoints["miners/llama"]
    assert endpoint.url == "http://10.1.0.1:8443"
    assert endpoint.pool == "miners/llama"
    assert endpoint.tee == "sev-snp"
    assert endpoint.attested_at == at(-30)
    assert endpoint.expires_at == at(30)  # the pod's, earlier than the slice's
    assert endpoint.measurement == MEASUREMENT
    assert endpoint.chip_id == "chip-p1"
    assert endpoint.hpke_key_sha256 == "11" * 32
    assert endpoint.signing_key_sha256 == "22" * 32


def test_unknown_pod_has_the_pools_tee_and_no_attestation_time() -> None:
    slice_ = attested_slice([("10.1.0.1", "p1", 60)])
    (endpoint,) = inventory_from([], [pool()], [slice_], [], NOW).endpoints["miners/llama"]
    assert endpoint.tee == "sev-snp"
    assert endpoint.attested_at is None
    assert endpoint.expires_at == at(60)
    assert endpoint.attestation_age(NOW) is None


def test_external_endpoint_carries_its_lease_and_a_url_without_trailing_slash() -> None:
    pools = [external_pool([lease("m1", "https://m1.example:8443/", 60)])]
    (endpoint,) = inventory_from([], pools, [], [], NOW).endpoints["miners/ext"]
    assert endpoint.key == "miners/ext/m1"
    assert endpoint.url == "https://m1.example:8443"
    assert endpoint.tee == "tdx"
    assert endpoint.attested_at == at(-10)
    assert endpoint.expires_at == at(60)
    assert endpoint.chip_id == "chip-m1"
    assert endpoint.hpke_key_sha256 == "33" * 32


def test_ipv6_address_is_bracketed() -> None:
    slice_ = attested_slice([("fd00::5", "p1", 60)])
    slice_["addressType"] = "IPv6"
    (endpoint,) = inventory_from([], [pool()], [slice_], [], NOW).endpoints["miners/llama"]
    assert endpoint.url == "http://[fd00::5]:8443"


def test_slice_whose_pool_label_disagrees_with_its_name_is_ignored() -> None:
    slice_ = attested_slice([("10.1.0.1", "p1", 60)])
    slice_["metadata"]["labels"][admission.POOL_LABEL] = "other"
    warnings: list[str] = []
    inventory = inventory_from([], [pool()], [slice_], [], NOW, warn=warnings.append)
    assert inventory.endpoints["miners/llama"] == []
    assert warnings == [f"EndpointSlice {NS}/llama-attested ignored: its pool label disagrees"]


def test_slice_not_managed_by_the_operator_is_ignored() -> None:
    slice_ = attested_slice([("10.1.0.1", "p1", 60)])
    del slice_["metadata"]["labels"][admission.SLICE_MANAGED_BY_LABEL]
    assert inventory_from([], [pool()], [slice_], [], NOW).endpoints["miners/llama"] == []


INVALID_ROUTES = [
    ("bad_pool_name", {"backends": [{"pool": "Not_A_Name"}]}, "spec.backends[0].pool"),
    ("unknown_field", {"colour": "blue"}, "spec.colour"),
    ("bad_sort", {"routing": {"sort": "cheapest"}}, "spec.routing.sort"),
]


@pytest.mark.parametrize(
    ("change", "path"),
    [(c, p) for _, c, p in INVALID_ROUTES],
    ids=[i for i, _, _ in INVALID_ROUTES],
)
def test_invalid_route_is_skipped_naming_object_and_field(change: Obj, path: str) -> None:
    bad = route("bad", model="other", **change)
    warnings: list[str] = []
    inventory = inventory_from([route(), bad], [pool()], [], [], NOW, warn=warnings.append)
    assert [r.metadata.name for r in inventory.routes] == ["llama"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"Route {NS}/bad skipped: invalid at {path}")


def test_invalid_pool_is_skipped_with_its_endpoints() -> None:
    bad = pool()
    bad["spec"]["pricing"]["inputPerMillion"] = "-1"
    warnings: list[str] = []
    slices = [attested_slice([("10.1.0.1", "p1", 60)])]
    inventory = inventory_from([], [bad], slices, [], NOW, warn=warnings.append)
    assert inventory.pools == []
    assert inventory.endpoints == {}
    assert "spec.pricing.inputPerMillion" in warnings[0]


def test_pool_whose_status_alone_is_invalid_keeps_its_spec() -> None:
    obj = external_pool([lease("m1", "https://m1.example:8443/", 60)])
    obj["status"]["attestedReplicas"] = "many"
    warnings: list[str] = []
    inventory = inventory_from([], [obj], [], [], NOW, warn=warnings.append)
    assert [p.metadata.name for p in inventory.pools] == ["ext"]
    assert [e.key for e in inventory.endpoints["miners/ext"]] == ["miners/ext/m1"]
    assert warnings == [
        f"MinerPool {NS}/ext: status ignored, invalid at status.attestedReplicas: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]


def test_malformed_expiry_annotation_admits_nothing() -> None:
    slice_ = attested_slice([("10.1.0.1", "p1", 60)])
    slice_["metadata"]["annotations"][admission.EXPIRY] = json.dumps(["not", "a", "map"])
    assert inventory_from([], [pool()], [slice_], [], NOW).endpoints["miners/llama"] == []


def test_inventory_builds_a_catalog_routing_the_model_to_the_pool() -> None:
    slices = [attested_slice([("10.1.0.1", "p1", 60)])]
    inventory = inventory_from(
        [route()], [pool()], slices, [pod("p1", "10.1.0.1")], NOW, namespaces=(NS,)
    )
    catalog = build_catalog(inventory)
    (backend,) = catalog.models["llama"].backends
    assert [e.url for e in backend.pool.endpoints] == ["http://10.1.0.1:8443"]


def test_assembly_does_not_mutate_its_input() -> None:
    objs = (
        [route()],
        [pool()],
        [attested_slice([("10.1.0.1", "p1", 60)])],
        [pod("p1", "10.1.0.1")],
    )
    before = copy.deepcopy(objs)
    inventory_from(*objs, NOW)
    assert objs == before


def test_nothing_in_nothing_out() -> None:
    assert inventory_from([], [], [], [], NOW) == Inventory(routes=[], pools=[], endpoints={})
