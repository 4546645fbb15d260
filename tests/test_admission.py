"""The admission contract: the attested EndpointSlice the operator writes and every router
reads; readers fail closed on expiry, whatever the slice lists."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from teeroute import admission
from teeroute.admission import AdmittedEndpoint, admitted, build_slice

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def endpoint(address: str, seconds_left: int, pod: str = "") -> AdmittedEndpoint:
    return AdmittedEndpoint(
        address, 8443, NOW + dt.timedelta(seconds=seconds_left), pod=pod or address, node="n1"
    )


def test_round_trip_keeps_addresses_expiry_and_targets() -> None:
    written = [endpoint("10.0.0.2", 60, "b"), endpoint("10.0.0.1", 30, "a")]
    slice_ = build_slice(namespace="miners", pool="llama", port=8443, endpoints=written)
    assert slice_["metadata"]["name"] == "llama-attested"
    assert slice_["metadata"]["labels"][admission.SERVICE_LABEL] == "llama"
    assert slice_["metadata"]["labels"][admission.SLICE_MANAGED_BY_LABEL] == "teeroute-operator"
    assert [e["addresses"] for e in slice_["endpoints"]] == [["10.0.0.1"], ["10.0.0.2"]]
    assert slice_["endpoints"][0]["targetRef"] == {
        "kind": "Pod",
        "name": "a",
        "namespace": "miners",
    }
    assert sorted(admitted(slice_, NOW), key=lambda e: e.address) == sorted(
        written, key=lambda e: e.address
    )


def test_expired_endpoints_are_dropped_by_the_reader() -> None:
    slice_ = build_slice(
        namespace="m",
        pool="p",
        port=8443,
        endpoints=[endpoint("10.0.0.1", 30), endpoint("10.0.0.2", 90)],
    )
    assert [e.address for e in admitted(slice_, NOW + dt.timedelta(seconds=31))] == ["10.0.0.2"]
    assert admitted(slice_, NOW + dt.timedelta(seconds=90)) == []  # expiry is exclusive


def mangle(slice_: dict[str, Any], how: str) -> dict[str, Any]:
    out = json.loads(json.dumps(slice_))
    if how == "no-expiry-annotation":
        del out["metadata"]["annotations"]
    elif how == "expiry-not-json":
        out["metadata"]["annotations"][admission.EXPIRY] = "{"
    elif how == "expiry-a-list":
        out["metadata"]["annotations"][admission.EXPIRY] = "[]"
    elif how == "expiry-without-zone":
        out["metadata"]["annotations"][admission.EXPIRY] = '{"10.0.0.1": "2099-01-01T00:00:00"}'
    elif how == "expiry-garbage":
        out["metadata"]["annotations"][admission.EXPIRY] = '{"10.0.0.1": "soon"}'
    elif how == "address-not-in-expiry":
        out["endpoints"][0]["addresses"] = ["10.9.9.9"]
    elif how == "not-ready":
        out["endpoints"][0]["conditions"]["ready"] = False
    elif how == "no-ports":
        out["ports"] = []
    return out


@pytest.mark.parametrize(
    "how",
    [
        "no-expiry-annotation",
        "expiry-not-json",
        "expiry-a-list",
        "expiry-without-zone",
        "expiry-garbage",
        "address-not-in-expiry",
        "not-ready",
        "no-ports",
    ],
)
def test_anything_malformed_admits_nothing(how: str) -> None:
    slice_ = build_slice(namespace="m", pool="p", port=8443, endpoints=[endpoint("10.0.0.1", 60)])
    assert admitted(slice_, NOW)
    assert admitted(mangle(slice_, how), NOW) == []


def test_output_is_stable_for_an_unchanged_set() -> None:
    a = [endpoint("10.0.0.1", 60), endpoint("10.0.0.2", 60)]
    one = build_slice(namespace="m", pool="p", port=8443, endpoints=a)
    two = build_slice(namespace="m", pool="p", port=8443, endpoints=list(reversed(a)))
    assert one == two


def test_external_leases_admit_until_expiry_and_never_after_a_chip_change() -> None:
    def at(seconds: int) -> str:
        return admission.rfc3339(NOW + dt.timedelta(seconds=seconds))

    status = {
        "endpoints": [
            {"name": "a", "url": "https://a", "expiresAt": at(30)},
            {"name": "b", "url": "https://b", "expiresAt": at(-1)},
            {"name": "c", "url": "https://c", "expiresAt": at(30), "chipChanged": "x -> y"},
            {"name": "d", "url": "https://d", "expiresAt": ""},
            {"name": "", "url": "https://e", "expiresAt": at(30)},
        ]
    }
    assert [(e.name, e.url) for e in admission.admitted_external(status, NOW)] == [
        ("a", "https://a")
    ]
    assert admission.admitted_external({}, NOW) == []


def test_the_attested_public_keys_are_verdict_annotations() -> None:
    assert admission.HPKE_PUBLIC_KEY == "teeroute.dev/hpke-public-key"
    assert admission.SIGNING_PUBLIC_KEY == "teeroute.dev/signing-public-key"
    assert admission.SECRETS_RELEASED == "teeroute.dev/secrets-released"
    for key in (
        admission.HPKE_PUBLIC_KEY,
        admission.SIGNING_PUBLIC_KEY,
        admission.SECRETS_RELEASED,
    ):
        assert key in admission.VERDICT_ANNOTATIONS
    assert len(set(admission.VERDICT_ANNOTATIONS)) == len(admission.VERDICT_ANNOTATIONS)


def test_an_external_lease_carries_the_public_keys_on_the_wire_in_camel_case() -> None:
    from teeroute.api.minerpool import EndpointAttestation

    entry = EndpointAttestation.model_validate(
        {
            "name": "m1",
            "url": "https://m1",
            "hpkePublicKey": "aGs=",
            "signingPublicKey": "c2s=",
            "secretsReleased": "f" * 64,
        }
    )
    assert (entry.hpke_public_key, entry.signing_public_key) == ("aGs=", "c2s=")
    assert entry.model_dump(by_alias=True)["secretsReleased"] == "f" * 64
