"""The cluster source's assembly (pure): which endpoints the gateway may route to, given the
objects the watches cached, and with which attestation details. Endpoints come from the
operator's signed admission records alone; the forged-admission cases show what a namespace
editor's slices, leases and keys get them (nothing)."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute import admission, admission_record
from teeroute.admission import AdmittedEndpoint, build_slice, rfc3339
from teeroute.admission_record import AdmissionRecord
from teeroute_gateway.catalog import Inventory, build_catalog
from teeroute_gateway.sources.kube_inventory import inventory_from

Obj = dict[str, Any]
NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
NS = "miners"
MEASUREMENT = "ab" * 48
OPERATOR = ed25519.Ed25519PrivateKey.generate()
OPERATOR_KEY = OPERATOR.public_key().public_bytes_raw()
ATTACKER = ed25519.Ed25519PrivateKey.generate()
HPKE = bytes([0x11]) * 32
SIGNING = bytes([0x22]) * 32


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


def record(
    endpoint: str,
    url: str,
    expires_in: int = 60,
    pool_key: str = f"{NS}/llama",
    tee: str = "sev-snp",
    hpke: bytes = HPKE,
) -> AdmissionRecord:
    return AdmissionRecord(
        pool=pool_key,
        endpoint=endpoint,
        url=url,
        tee=tee,
        measurement=MEASUREMENT,
        chip_id=f"chip-{endpoint}",
        hpke_public_key=base64.b64encode(hpke).decode(),
        signing_public_key=base64.b64encode(SIGNING).decode(),
        attested_at=at(-30),
        expires_at=at(expires_in),
        pod_uid=f"uid-{endpoint}",
    )


def token(rec: AdmissionRecord, key: ed25519.Ed25519PrivateKey = OPERATOR) -> str:
    return admission_record.sign(rec, key.sign)


def pod_token(name: str, ip: str, expires_in: int = 60, **options: Any) -> str:
    return token(record(name, f"http://{ip}:8443", expires_in, **options))


def attested_slice(
    tokens: list[str],
    pool_name: str = "llama",
    ns: str = NS,
    listed: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> Obj:
    """A slice carrying `tokens`, listing `listed` (address, pod) for kube-proxy."""
    obj = build_slice(
        namespace=ns,
        pool=pool_name,
        port=8443,
        endpoints=[AdmittedEndpoint(a, 8443, at(60), pod=p) for a, p in listed],
    )
    obj["metadata"]["annotations"][admission_record.RECORDS_ANNOTATION] = (
        admission_record.dump_list(tokens)
    )
    return obj


def lease(name: str, url: str, expires_in: int, signed: bool = True, **extra: str) -> Obj:
    """An external endpoint's status entry; `signed`: with the operator's record for it."""
    rec = record(name, url, expires_in, pool_key=f"{NS}/ext", tee="tdx")
    return {
        "name": name,
        "url": url,
        "attestedAt": rfc3339(at(-10)),
        "expiresAt": rfc3339(at(expires_in)),
        "tee": "tdx",
        "measurement": MEASUREMENT,
        "chipId": f"chip-{name}",
        "admissionRecord": token(rec) if signed else "",
        **extra,
    }


def external_pool(leases: list[Obj], **endpoints: str) -> Obj:
    obj = pool("ext", external=endpoints or {"m1": "https://m1.example:8443/"})
    obj["status"] = {"endpoints": leases}
    return obj


def inventory(routes: list[Obj], pools: list[Obj], slices: list[Obj], **options: Any) -> Inventory:
    return inventory_from(routes, pools, slices, NOW, operator_key=OPERATOR_KEY, **options)


@dataclass
class Case:
    id: str
    routes: list[Obj] = field(default_factory=list)
    pools: list[Obj] = field(default_factory=lambda: [pool()])
    slices: list[Obj] = field(default_factory=list)
    namespaces: tuple[str, ...] = ()
    expected: dict[str, set[str]] = field(default_factory=dict)
    """Pool key -> endpoint keys."""


CASES = [
    Case(
        "signed_unexpired_records_are_admitted",
        slices=[attested_slice([pod_token("p1", "10.1.0.1"), pod_token("p2", "10.1.0.2")])],
        expected={"miners/llama": {"miners/llama/p1", "miners/llama/p2"}},
    ),
    Case(
        "expired_record_is_dropped",
        slices=[attested_slice([pod_token("p1", "10.1.0.1"), pod_token("p2", "10.1.0.2", -1)])],
        expected={"miners/llama": {"miners/llama/p1"}},
    ),
    Case(
        "forged_slice_entries_without_records_admit_nothing",
        slices=[attested_slice([], listed=[("10.1.0.1", "p1"), ("10.6.6.6", "evil")])],
        expected={"miners/llama": set()},
    ),
    Case(
        "record_signed_by_another_key_is_dropped",
        slices=[attested_slice([token(record("evil", "http://10.6.6.6:8443"), ATTACKER)])],
        expected={"miners/llama": set()},
    ),
    Case(
        "record_of_another_pool_replayed_into_this_slice_is_dropped",
        slices=[attested_slice([pod_token("p1", "10.1.0.1", pool_key="other/llama")])],
        expected={"miners/llama": set()},
    ),
    Case(
        "slice_of_an_unknown_pool_is_ignored",
        slices=[attested_slice([pod_token("p1", "10.1.0.1")], pool_name="other")],
        expected={"miners/llama": set()},
    ),
    Case(
        "slice_in_another_namespace_than_the_pool_is_ignored",
        slices=[attested_slice([pod_token("p1", "10.1.0.1")], ns="elsewhere")],
        expected={"miners/llama": set()},
    ),
    Case(
        "external_endpoints_with_signed_live_leases_are_admitted",
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
        "external_lease_without_a_record_is_excluded",
        pools=[external_pool([lease("m1", "https://m1.example:8443/", 60, signed=False)])],
        expected={"miners/ext": set()},
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
            attested_slice([pod_token("p1", "10.1.0.1")]),
            attested_slice([pod_token("p1", "10.2.0.1", pool_key="other/llama")], ns="other"),
        ],
        namespaces=(NS,),
        expected={"miners/llama": {"miners/llama/p1"}},
    ),
    Case(
        "without_a_namespace_filter_every_namespace_counts",
        pools=[pool(), pool(ns="other")],
        slices=[
            attested_slice([pod_token("p1", "10.1.0.1")]),
            attested_slice([pod_token("p1", "10.2.0.1", pool_key="other/llama")], ns="other"),
        ],
        expected={"miners/llama": {"miners/llama/p1"}, "other/llama": {"other/llama/p1"}},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_admitted_endpoints(case: Case) -> None:
    found = inventory(case.routes, case.pools, case.slices, namespaces=case.namespaces)
    assert {k: {e.key for e in v} for k, v in found.endpoints.items()} == case.expected
    for endpoints in found.endpoints.values():
        assert all(e.admitted(NOW) for e in endpoints)


def test_pod_endpoint_carries_the_records_address_keys_and_expiry() -> None:
    slice_ = attested_slice([pod_token("p1", "10.1.0.1", 30)], listed=[("10.9.9.9", "p1")])
    (endpoint,) = inventory([], [pool()], [slice_]).endpoints["miners/llama"]
    assert endpoint.url == "http://10.1.0.1:8443"  # the record's, not the slice entry's
    assert endpoint.pool == "miners/llama"
    assert endpoint.tee == "sev-snp"
    assert endpoint.attested_at == at(-30)
    assert endpoint.expires_at == at(30)
    assert endpoint.measurement == MEASUREMENT
    assert endpoint.chip_id == "chip-p1"
    assert endpoint.hpke_public == HPKE
    assert endpoint.hpke_key_sha256 == hashlib.sha256(HPKE).hexdigest()
    assert endpoint.signing_key_sha256 == hashlib.sha256(SIGNING).hexdigest()


def test_a_forged_key_in_a_signed_record_breaks_its_signature() -> None:
    """A namespace editor who edits the record's body to put in their own HPKE key."""
    genuine = pod_token("p1", "10.1.0.1")
    _, _, signature = genuine.partition(".")
    doc = record("p1", "http://10.1.0.1:8443", hpke=bytes([0x66]) * 32).to_json()
    forged_body = base64.urlsafe_b64encode(admission_record._canonical(doc)).rstrip(b"=")
    forged = f"{forged_body.decode()}.{signature}"
    warnings: list[str] = []
    found = inventory([], [pool()], [attested_slice([forged])], warn=warnings.append)
    assert found.endpoints["miners/llama"] == []
    assert warnings == [
        "admission record for miners/llama ignored: record.signature: not signed by the "
        "operator's key"
    ]


def test_a_record_for_another_pool_is_reported_by_name() -> None:
    warnings: list[str] = []
    slice_ = attested_slice([pod_token("p1", "10.1.0.1", pool_key="victims/llama")])
    inventory([], [pool()], [slice_], warn=warnings.append)
    assert warnings == [
        "admission record for miners/llama ignored: record.pool: signed for pool "
        "victims/llama, published for miners/llama"
    ]


def test_external_endpoint_carries_its_record_and_a_url_without_trailing_slash() -> None:
    pools = [external_pool([lease("m1", "https://m1.example:8443/", 60)])]
    (endpoint,) = inventory([], pools, []).endpoints["miners/ext"]
    assert endpoint.key == "miners/ext/m1"
    assert endpoint.url == "https://m1.example:8443"
    assert endpoint.tee == "tdx"
    assert endpoint.attested_at == at(-30)
    assert endpoint.expires_at == at(60)
    assert endpoint.chip_id == "chip-m1"
    assert endpoint.hpke_public == HPKE


def test_an_external_lease_edited_in_status_keeps_the_records_figures() -> None:
    forged = lease("m1", "https://m1.example:8443/", 60, expiresAt=rfc3339(at(99999)), tee="x")
    (endpoint,) = inventory([], [external_pool([forged])], []).endpoints["miners/ext"]
    assert endpoint.expires_at == at(60) and endpoint.tee == "tdx"


def test_slice_whose_pool_label_disagrees_with_its_name_is_ignored() -> None:
    slice_ = attested_slice([pod_token("p1", "10.1.0.1")])
    slice_["metadata"]["labels"][admission.POOL_LABEL] = "other"
    warnings: list[str] = []
    found = inventory([], [pool()], [slice_], warn=warnings.append)
    assert found.endpoints["miners/llama"] == []
    assert warnings == [f"EndpointSlice {NS}/llama-attested ignored: its pool label disagrees"]


def test_slice_not_managed_by_the_operator_is_ignored() -> None:
    slice_ = attested_slice([pod_token("p1", "10.1.0.1")])
    del slice_["metadata"]["labels"][admission.SLICE_MANAGED_BY_LABEL]
    assert inventory([], [pool()], [slice_]).endpoints["miners/llama"] == []


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
    found = inventory([route(), bad], [pool()], [], warn=warnings.append)
    assert [r.metadata.name for r in found.routes] == ["llama"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"Route {NS}/bad skipped: invalid at {path}")


def test_invalid_pool_is_skipped_with_its_endpoints() -> None:
    bad = pool()
    bad["spec"]["pricing"]["inputPerMillion"] = "-1"
    warnings: list[str] = []
    slices = [attested_slice([pod_token("p1", "10.1.0.1")])]
    found = inventory([], [bad], slices, warn=warnings.append)
    assert found.pools == []
    assert found.endpoints == {}
    assert "spec.pricing.inputPerMillion" in warnings[0]


def test_pool_whose_status_alone_is_invalid_keeps_its_spec() -> None:
    obj = external_pool([lease("m1", "https://m1.example:8443/", 60)])
    obj["status"]["attestedReplicas"] = "many"
    warnings: list[str] = []
    found = inventory([], [obj], [], warn=warnings.append)
    assert [p.metadata.name for p in found.pools] == ["ext"]
    assert [e.key for e in found.endpoints["miners/ext"]] == ["miners/ext/m1"]
    assert warnings == [
        f"MinerPool {NS}/ext: status ignored, invalid at status.attestedReplicas: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]


def test_malformed_records_annotation_admits_nothing() -> None:
    slice_ = attested_slice([pod_token("p1", "10.1.0.1")])
    slice_["metadata"]["annotations"][admission_record.RECORDS_ANNOTATION] = '{"not": "a list"}'
    assert inventory([], [pool()], [slice_]).endpoints["miners/llama"] == []


def test_inventory_builds_a_catalog_routing_the_model_to_the_pool() -> None:
    slices = [attested_slice([pod_token("p1", "10.1.0.1")])]
    catalog = build_catalog(inventory([route()], [pool()], slices, namespaces=(NS,)))
    (backend,) = catalog.models["llama"].backends
    assert [e.url for e in backend.pool.endpoints] == ["http://10.1.0.1:8443"]


def test_assembly_does_not_mutate_its_input() -> None:
    objs = ([route()], [pool()], [attested_slice([pod_token("p1", "10.1.0.1")])])
    before = copy.deepcopy(objs)
    inventory(*objs)
    assert objs == before


def test_nothing_in_nothing_out() -> None:
    assert inventory([], [], []) == Inventory(routes=[], pools=[], endpoints={})
