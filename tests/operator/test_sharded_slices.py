"""A pool of 230 endpoints is published as three EndpointSlices of at most 100 (as the
EndpointSlice controller shards them), each with the signed records of the endpoints it
lists; one endpoint leaving rewrites one slice, an emptied slice is deleted, and the gateway's
real cluster source routes to every endpoint of every slice.

The operator's publishing code runs in the test process against the sandbox's apiserver, from
leases the test grants (attestation itself is what test_attestation.py exercises: 230 agents
are more than a test may start)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest

from teeroute.api.minerpool import MinerPool
from teeroute.kube.config import from_kubeconfig
from teeroute.sealing.secrets import Signer
from teeroute_operator import endpointslice
from teeroute_operator.lease import Record
from teeroute_operator.leases import Lease, LeaseBook
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import wait_for

from ..gateway.test_kube_source import OPERATOR, RunningSource, in_cluster_pool
from .test_steady_writes import CountingKube

pytestmark = pytest.mark.sandbox

Obj = dict[str, Any]
COUNT = 230


def pod(ns: str, i: int) -> Obj:
    return {
        "metadata": {"name": f"big-{i}", "uid": f"uid-{i:04d}", "namespace": ns},
        "spec": {"nodeName": f"node-{i % 7}"},
        "status": {
            "phase": "Running",
            "podIP": f"10.244.{200 + i // 200}.{i % 200 + 1}",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def leased(book: LeaseBook, ns: str, pods: list[Obj]) -> None:
    now = dt.datetime.now(dt.UTC)
    for p in pods:
        hpke = hashlib.sha256(p["metadata"]["uid"].encode()).digest()
        record = Record(
            attested_at=now,
            expires_at=now + dt.timedelta(minutes=5),
            tee="simulated",
            measurement="ab" * 48,
            chip_id=f"chip-{p['metadata']['uid']}",
            hpke_key=hashlib.sha256(hpke).hexdigest(),
            hpke_public_key=base64.b64encode(hpke).decode(),
            signing_public_key=base64.b64encode(hpke).decode(),
        )
        url = f"http://{p['status']['podIP']}:8443"
        lease = Lease(record, p["metadata"]["name"], url, p["metadata"]["uid"])
        book.put((ns, "big"), p["metadata"]["uid"], lease)


def slices(kube: KubeRest, ns: str) -> dict[str, Obj]:
    items = kube.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
        labelSelector="teeroute.dev/pool=big",
    )["items"]
    return {s["metadata"]["name"]: s for s in items}


def test_230_endpoints_are_three_slices_and_the_gateway_routes_them_all(
    kube: KubeRest, sandbox: Sandbox, namespace: str, crds: None, tmp_path: Path
) -> None:
    ns = namespace
    kube.post(f"/apis/teeroute.dev/v1alpha1/namespaces/{ns}/minerpools", in_cluster_pool("big"))
    pool = MinerPool.model_validate(
        kube.get(f"/apis/teeroute.dev/v1alpha1/namespaces/{ns}/minerpools/big")
    )
    signer = Signer.from_private(OPERATOR)  # the key RunningSource's gateway pins
    book = LeaseBook(signer)
    pods = [pod(ns, i) for i in range(COUNT)]
    leased(book, ns, pods)
    client = CountingKube(sandbox.kubeconfig)
    source = RunningSource(from_kubeconfig(sandbox.kubeconfig), namespaces=[ns]).start()
    loop = asyncio.new_event_loop()

    def publish(these: list[Obj]) -> int:
        now = dt.datetime.now(dt.UTC)
        return loop.run_until_complete(endpointslice.publish(client, pool, these, now, book))

    def routed() -> int:
        return len(source.endpoints(f"{ns}/big"))

    try:
        assert publish(pods) == COUNT
        found = slices(kube, ns)
        assert sorted(found) == ["big-attested", "big-attested-1", "big-attested-2"]
        assert sorted(len(s["endpoints"]) for s in found.values()) == [30, 100, 100]
        wait_for(lambda: routed() == COUNT, what=f"the gateway to route all {COUNT}")

        client.writes.clear()
        assert publish(pods) == COUNT
        assert client.writes == []  # nothing changed: nothing written

        second = found["big-attested-1"]
        gone = second["endpoints"][5]["addresses"][0]
        remaining = [p for p in pods if p["status"]["podIP"] != gone]
        assert publish(remaining) == COUNT - 1
        assert client.writes == [
            f"PATCH /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/big-attested-1"
        ]
        after = slices(kube, ns)
        for name in ("big-attested", "big-attested-2"):
            assert (
                after[name]["metadata"]["resourceVersion"]
                == (found[name]["metadata"]["resourceVersion"])
            )
        wait_for(lambda: routed() == COUNT - 1, what="the gateway to drop the one that left")

        third = {e["addresses"][0] for e in found["big-attested-2"]["endpoints"]}
        client.writes.clear()
        fewer = [p for p in remaining if p["status"]["podIP"] not in third]
        assert publish(fewer) == COUNT - 1 - len(third)
        assert client.writes == [
            f"DELETE /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/big-attested-2"
        ]
        assert sorted(slices(kube, ns)) == ["big-attested", "big-attested-1"]
        wait_for(lambda: routed() == len(fewer), what="the gateway to drop the emptied slice")
    finally:
        source.stop()
        loop.run_until_complete(client.aclose())
        loop.close()
