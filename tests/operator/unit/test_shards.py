"""EndpointSlices sharded at 100 endpoints (pure): a stable assignment, so one endpoint's change
rewrites one slice; the gateway reads the signed records of every slice of a pool."""

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
from teeroute_gateway.sources.kube_inventory import inventory_from
from teeroute_operator import endpointslice, publishing, shards
from teeroute_operator.lease import Record
from teeroute_operator.leases import Lease, LeaseBook

from ..cases import valid_pool

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
Obj = dict[str, Any]


def ips(first: int, count: int) -> list[str]:
    return [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(first, first + count)]


def test_250_endpoints_fill_three_slices_of_at_most_100() -> None:
    found = shards.assign(ips(0, 250), {})
    assert [len(v) for v in found.values()] == [100, 100, 50]
    assert sorted(a for v in found.values() for a in v) == sorted(ips(0, 250))


def test_one_endpoint_leaving_changes_only_its_slice() -> None:
    before = shards.assign(ips(0, 250), {})
    gone = before[1][17]
    after = shards.assign([a for a in ips(0, 250) if a != gone], before)
    assert after[0] == before[0] and after[2] == before[2]
    assert after[1] == [a for a in before[1] if a != gone]


def test_a_newcomer_fills_the_hole_without_moving_anyone() -> None:
    before = shards.assign(ips(0, 250), {})
    gone = before[0][3]
    without = shards.assign([a for a in ips(0, 250) if a != gone], before)
    newcomer = "10.9.9.9"
    after = shards.assign([*without[0], *without[1], *without[2], newcomer], without)
    assert newcomer in after[0] and after[1] == before[1] and after[2] == before[2]


def test_emptied_slices_go_but_the_first_stays() -> None:
    before = shards.assign(ips(0, 150), {})
    assert shards.assign(before[0][:10], before) == {0: before[0][:10]}
    assert shards.assign(before[1], before) == {0: [], 1: before[1]}
    assert shards.assign([], before) == {0: []}


def test_an_endpoint_listed_twice_is_kept_once_in_the_lowest_slice() -> None:
    found = shards.assign(["10.0.0.1"], {2: ["10.0.0.1"], 1: ["10.0.0.1"]})
    assert found == {0: [], 1: ["10.0.0.1"]}


def test_an_overfull_slice_sheds_to_the_others() -> None:
    found = shards.assign(ips(0, 5), {0: ips(0, 5)}, size=2)
    assert [len(v) for v in found.values()] == [2, 2, 1]


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("llama-attested", ("llama", 0)),
        ("llama-attested-1", ("llama", 1)),
        ("llama-attested-12", ("llama", 12)),
        ("a-attested-1-attested", ("a-attested-1", 0)),
        ("a-attested-1-attested-2", ("a-attested-1", 2)),
        ("llama-attested-01", None),
        ("llama-attested-x", None),
        ("llama-attested-", None),
        ("-attested-1", None),
        ("llama", None),
    ],
)
def test_slice_names_name_their_pool_and_number(name: str, parsed: Any) -> None:
    assert admission.slice_shard(name) == parsed
    if parsed is not None:
        assert admission.slice_name(*parsed) == name


# -- the operator's slices, read by the gateway ----------------------------------------------

KEY = Signer.from_private(ed25519.Ed25519PrivateKey.generate())
HPKE = base64.b64encode(b"\x11" * 32).decode()


def pool() -> MinerPool:
    body = valid_pool("big")
    body["metadata"] |= {"namespace": "m", "uid": "pool-uid"}
    return MinerPool.model_validate(body)


def pod(i: int, ip: str) -> Obj:
    return {
        "metadata": {"name": f"big-{i}", "uid": f"uid-{i}", "namespace": "m"},
        "spec": {"nodeName": "n1"},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def book_for(pods: list[Obj]) -> LeaseBook:
    book = LeaseBook(KEY)
    for p in pods:
        hpke = base64.b64encode(hashlib.sha256(p["metadata"]["uid"].encode()).digest()).decode()
        record = Record(
            attested_at=NOW,
            expires_at=NOW + dt.timedelta(minutes=5),
            tee="simulated",
            measurement="ab" * 48,
            chip_id="chip",
            hpke_key=hashlib.sha256(base64.b64decode(hpke)).hexdigest(),
            hpke_public_key=hpke,
            signing_public_key=HPKE,
        )
        url = f"http://{p['status']['podIP']}:8443"
        lease = Lease(record, p["metadata"]["name"], url, p["metadata"]["uid"])
        book.put(("m", "big"), p["metadata"]["uid"], lease)
    return book


def as_live(slices: dict[int, Obj]) -> dict[int, Obj]:
    return {
        n: {**obj, "metadata": {**obj["metadata"], "uid": f"s{n}"}} for n, obj in slices.items()
    }


def test_the_operators_slices_carry_each_shards_records_and_the_gateway_reads_them_all() -> None:
    pods = [pod(i, ip) for i, ip in enumerate(ips(0, 230))]
    book = book_for(pods)
    entries = endpointslice._entries(pool(), pods, NOW, book)
    slices = endpointslice.desired(pool(), entries, {})
    assert sorted(s["metadata"]["name"] for s in slices.values()) == [
        "big-attested",
        "big-attested-1",
        "big-attested-2",
    ]
    for obj in slices.values():
        notes = obj["metadata"]["annotations"]
        tokens = admission_record.load_list(notes[admission_record.RECORDS_ANNOTATION])
        records = admission_record.verify_all(tokens, KEY.public, pool="m/big", warn=print)
        assert sorted(r.url for r in records) == sorted(
            f"http://{e['addresses'][0]}:8443" for e in obj["endpoints"]
        )
    raw_pool = valid_pool("big") | {"metadata": {"name": "big", "namespace": "m"}}
    inventory = inventory_from(
        [], [raw_pool], slices.values(), NOW, operator_key=KEY.public, warn=print
    )
    assert len(inventory.endpoints["m/big"]) == 230


def test_one_pod_leaving_rewrites_one_slice_of_three() -> None:
    pods = [pod(i, ip) for i, ip in enumerate(ips(0, 230))]
    book = book_for(pods)
    live = as_live(
        endpointslice.desired(pool(), endpointslice._entries(pool(), pods, NOW, book), {})
    )
    gone = live[1]["endpoints"][7]["addresses"][0]
    remaining = [p for p in pods if p["status"]["podIP"] != gone]
    after = endpointslice.desired(
        pool(), endpointslice._entries(pool(), remaining, NOW, book), live
    )
    rewritten = [n for n, obj in after.items() if not publishing.covers(live[n], obj)]
    assert rewritten == [1]
