"""The operator's own leases: what it signs, what it lists, what it takes back after a restart,
and which pods it counts as the pool's own (pure)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute import admission, admission_record
from teeroute.api.minerpool import MinerPool
from teeroute.sealing.secrets import Signer
from teeroute_operator import endpointslice, ownership
from teeroute_operator.lease import Record, Unreachable, next_record
from teeroute_operator.leases import Lease, LeaseBook

from ..cases import valid_pool

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
POOL = ("m", "p")
HPKE = base64.b64encode(b"\x11" * 32).decode()
SIGNING = base64.b64encode(b"\x22" * 32).decode()
Obj = dict[str, Any]


def signer() -> Signer:
    return Signer.from_private(ed25519.Ed25519PrivateKey.generate())


def record(expires_in: int = 60, hpke: str = HPKE) -> Record:
    return Record(
        attested_at=NOW - dt.timedelta(seconds=5),
        expires_at=NOW + dt.timedelta(seconds=expires_in),
        tee="simulated",
        measurement="ab" * 48,
        chip_id="chip",
        hpke_key=hashlib.sha256(base64.b64decode(hpke)).hexdigest(),
        signing_key=hashlib.sha256(base64.b64decode(SIGNING)).hexdigest(),
        hpke_public_key=hpke,
        signing_public_key=SIGNING,
    )


def pool() -> MinerPool:
    body = valid_pool("p")
    body["metadata"] |= {"namespace": "m", "uid": "pool-uid"}
    return MinerPool.model_validate(body)


def pod(name: str, ip: str, uid: str, annotations: dict[str, str] | None = None) -> Obj:
    return {
        "metadata": {"name": name, "uid": uid, "annotations": annotations or {}},
        "spec": {"nodeName": "n1"},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def lease_for(p: Obj, rec: Record) -> Lease:
    url = f"http://{p['status']['podIP']}:8443"
    return Lease(rec, p["metadata"]["name"], url, p["metadata"]["uid"])


def test_a_signed_record_carries_the_operators_verdict_and_verifies_with_its_key() -> None:
    key = signer()
    book = LeaseBook(key)
    p = pod("a", "10.0.0.1", "uid-a")
    token = book.token(POOL, lease_for(p, record()))
    assert token is not None
    verified = admission_record.verify(token, key.public, pool="m/p")
    assert (verified.url, verified.hpke_public_key, verified.expires_at) == (
        "http://10.0.0.1:8443",
        HPKE,
        NOW + dt.timedelta(seconds=60),
    )
    with pytest.raises(admission_record.RecordInvalid, match=r"record\.signature"):
        admission_record.verify(token, signer().public, pool="m/p")


def test_an_operator_without_a_key_signs_nothing() -> None:
    p = pod("a", "10.0.0.1", "uid-a")
    assert LeaseBook(None).token(POOL, lease_for(p, record())) is None


def test_the_slice_lists_leased_pods_only_and_forged_annotations_count_for_nothing() -> None:
    book = LeaseBook(signer())
    fresh, expired = pod("fresh", "10.0.0.1", "u1"), pod("expired", "10.0.0.2", "u2")
    forged_far = {admission.EXPIRES_AT: "2099-01-01T00:00:00Z", admission.HPKE_PUBLIC_KEY: HPKE}
    forged = pod("forged", "10.0.0.3", "u3", forged_far)
    moved = pod("moved", "10.0.0.9", "u4")
    book.put(POOL, "u1", lease_for(fresh, record()))
    book.put(POOL, "u2", lease_for(expired, record(-1)))
    book.put(POOL, "u4", Lease(record(), "moved", "http://10.0.0.4:8443", "u4"))
    listed, tokens = endpointslice.admitted(pool(), [fresh, expired, forged, moved], NOW, book)
    assert [(e.address, e.pod) for e in listed] == [("10.0.0.1", "fresh")]
    assert len(tokens) == 1


def test_a_key_held_by_one_admitted_endpoint_is_found_across_pools() -> None:
    book = LeaseBook(signer())
    book.put(("victims", "v"), "uid-v", Lease(record(), "v", "http://10.0.0.1:8443", "uid-v"))
    hashed = record().hpke_key
    assert book.holder(hashed, NOW) == (("victims", "v"), "uid-v")
    assert book.holder(hashed, NOW + dt.timedelta(seconds=61)) is None  # expired holds nothing


def test_the_key_index_follows_every_change_of_the_book() -> None:
    """`holder` reads an index by key (not a scan of every lease): a lease that moved to
    another key, was dropped by `keep`, or whose pool was forgotten holds nothing."""
    book = LeaseBook(signer())
    other = base64.b64encode(b"\x33" * 32).decode()
    a, b = record().hpke_key, record(hpke=other).hpke_key
    book.put(POOL, "u1", Lease(record(), "one", "http://10.0.0.1:8443", "u1"))
    book.put(("n", "q"), "u2", Lease(record(hpke=other), "two", "http://10.0.0.2:8443", "u2"))
    assert book.holder(a, NOW) == (POOL, "u1")
    assert book.holder(b, NOW) == (("n", "q"), "u2")
    book.put(POOL, "u1", Lease(record(hpke=other), "one", "http://10.0.0.1:8443", "u1"))
    assert book.holder(a, NOW) is None  # its enclave changed keys
    book.keep(("n", "q"), set())
    assert book.holder(b, NOW) == (POOL, "u1")  # the one left with that key
    book.forget(POOL)
    assert book.holder(b, NOW) is None
    assert book._by_key == {}


def test_a_claim_settled_by_its_lease_leaves_another_endpoints_later_claim() -> None:
    book = LeaseBook(signer())
    key, first, second = record().hpke_key, (POOL, "uid-a"), (POOL, "uid-b")
    assert book.claim(key, first, NOW) is None
    later = NOW + dt.timedelta(minutes=2)  # the first claim lapsed; the second takes the key
    assert book.claim(key, second, later) is None
    book.put(POOL, "uid-a", Lease(Record(), "a", "http://10.0.0.1:8443", "uid-a"))
    assert book.claim(key, (POOL, "uid-c"), later) == second


def test_a_restarted_operator_takes_back_only_its_own_unexpired_records() -> None:
    key = signer()
    before = LeaseBook(key)
    a, b = pod("a", "10.0.0.1", "uid-a"), pod("b", "10.0.0.2", "uid-b")
    mine = before.token(POOL, lease_for(a, record()))
    stale = before.token(POOL, lease_for(b, record(-1)))
    theirs = LeaseBook(signer()).token(POOL, lease_for(b, record()))
    after = LeaseBook(key)
    recovered = after.recover(POOL, [mine, stale, theirs, "junk"], NOW, lambda r: r.pod_uid)
    assert recovered == 1
    held = after.get(POOL, "uid-a")
    assert held is not None and held.record.hpke_key == record().hpke_key
    assert after.get(POOL, "uid-b") is None


def test_an_unreachable_endpoint_keeps_no_lease_past_its_last_check_plus_the_current_max_age() -> (
    None
):
    held = record(3600)  # granted under a long maxEvidenceAge
    after = next_record(held, Unreachable("timeout"), now=NOW, max_age=dt.timedelta(seconds=30))
    assert after.record.expires_at == NOW + dt.timedelta(seconds=25)
    later = next_record(
        after.record,
        Unreachable("timeout"),
        now=NOW + dt.timedelta(seconds=26),
        max_age=dt.timedelta(seconds=30),
    )
    assert later.record.expires_at is None and later.event is not None


def replicaset(name: str, uid: str, owner_uid: str, image: str = "agent:1") -> Obj:
    return {
        "metadata": {
            "name": name,
            "uid": uid,
            "labels": {ownership.TEMPLATE_HASH: "h1"},
            "ownerReferences": [{"kind": "Deployment", "uid": owner_uid, "controller": True}],
        },
        "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": image}]}}},
    }


def owned_pod(rs_name: str = "p-h1", rs_uid: str = "rs-uid", image: str = "agent:1") -> Obj:
    return {
        "metadata": {
            "labels": {ownership.TEMPLATE_HASH: "h1"},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": rs_name, "uid": rs_uid, "controller": True}
            ],
        },
        "spec": {"containers": [{"name": "agent", "image": image}]},
    }


OWNERSHIP = [
    ("the_pools_own_pod", owned_pod(), True),
    ("a_bare_pod_with_the_pool_label", {"metadata": {}, "spec": {}}, False),
    ("an_owner_reference_forged_with_the_wrong_uid", owned_pod(rs_uid="other"), False),
    ("a_replicaset_of_another_deployment", owned_pod(rs_name="q-h1", rs_uid="q-uid"), False),
    ("its_image_swapped_by_a_pod_editor", owned_pod(image="evil:1"), False),
]


@pytest.mark.parametrize(
    ("candidate", "expected"), [(c, e) for _, c, e in OWNERSHIP], ids=[i for i, _, _ in OWNERSHIP]
)
def test_only_pods_of_the_pools_own_replicaset_and_template_are_its_own(
    candidate: Obj, expected: bool
) -> None:
    sets = {
        "p-h1": replicaset("p-h1", "rs-uid", "deploy-uid"),
        "q-h1": replicaset("q-h1", "q-uid", "another-deployment"),
    }
    assert ownership.owned(candidate, sets, "deploy-uid") is expected


def test_two_endpoints_verified_in_one_sweep_cannot_both_claim_one_enclave_key() -> None:
    book = LeaseBook(signer())
    key, first, second = record().hpke_key, (POOL, "uid-a"), (POOL, "uid-b")
    assert book.claim(key, first, NOW) is None
    assert book.claim(key, second, NOW) == first  # no lease written yet: the claim counts
    assert book.claim(key, first, NOW) is None  # its own claim is no conflict
    book.put(POOL, "uid-a", Lease(record(), "a", "http://10.0.0.1:8443", "uid-a"))
    assert book.claim(key, second, NOW) == first  # now its lease holds it


def test_a_claim_whose_lease_never_came_stops_counting() -> None:
    book = LeaseBook(signer())
    key = record().hpke_key
    assert book.claim(key, (POOL, "uid-a"), NOW) is None
    later = NOW + dt.timedelta(minutes=2)
    assert book.claim(key, (POOL, "uid-b"), later) is None
