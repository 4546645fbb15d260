"""A steady pool costs the apiserver no writes: once its endpoints are attested, further sweeps
(and the reconciles that follow them) write nothing until a published expiry must move.

The operator's own parts run in the test process against the sandbox's real apiserver: its
Kube client (counting what it sends, nothing else changed), the reconciler and the sweeper;
the endpoints are real simulated-TEE agents (pods run by the runner, or a remote agent on the
sandbox's loopback)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from teeroute import admission
from teeroute.kube import Kube, load_config
from teeroute_operator import egress, reconcile, release_key
from teeroute_operator.leases import LeaseBook
from teeroute_operator.metrics import Metrics
from teeroute_operator.sweeper import Sweeper
from teeroute_operator.trust import TrustStore
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import wait_for
from tests import gateway_key

from .conftest import vendor
from .test_attestation import API, agent_outside, attested_pool, running_pods

pytestmark = pytest.mark.sandbox

Obj = dict[str, Any]
STEADY_SWEEPS = 4


class CountingKube(Kube):
    """The operator's real client; every request other than a read is also recorded."""

    def __init__(self, kubeconfig: Path) -> None:
        super().__init__(load_config(kubeconfig), field_manager="teeroute-operator")
        self.writes: list[str] = []

    async def _send(self, method: str, path: str, **kwargs: Any) -> Obj:
        if method != "GET":
            self.writes.append(f"{method} {path}")
        return await super()._send(method, path, **kwargs)


class InProcessOperator:
    """What the operator process does for one pool, minus kopf: reconcile, sweep, reconcile."""

    def __init__(self, sandbox: Sandbox, key_file: Path) -> None:
        release_key.create(key_file)
        self.signer = release_key.load(key_file)
        self.kube = CountingKube(sandbox.kubeconfig)
        self.leases = LeaseBook(self.signer)
        self.events: list[str] = []
        self.status_refreshes: list[str] = []
        self.sweeper = Sweeper(
            self.kube,
            TrustStore(vendor(sandbox).trust_dir, allow_simulated=True),
            Metrics(),
            lambda _obj, _type, reason, _message: self.events.append(reason),
            signer=self.signer,
            leases=self.leases,
            egress_allow=egress.EgressAllow(frozenset({"http"}), ("*",), loopback=True),
            gateway_keys=frozenset({gateway_key.PUBLIC}),
            after_sweep=self.refresh_status,
        )

    async def reconcile(self, ns: str, name: str, scope: Any = reconcile.Scope.FULL) -> None:
        await reconcile.reconcile_pool(
            self.kube,
            ns,
            name,
            lambda _obj, _type, reason, _message: self.events.append(reason),
            release_key=self.signer.public,
            leases=self.leases,
            gateway_keys=gateway_key.PUBLIC_B64,
            scope=scope,
        )

    async def refresh_status(self, ns: str, name: str) -> None:
        """What the operator's sweeper calls after a sweep (handlers.py)."""
        self.status_refreshes.append(f"{ns}/{name}")
        await self.reconcile(ns, name, reconcile.Scope.STATUS)

    async def sweep(self, ns: str, name: str) -> int:
        """One sweep alone; returns how many endpoints are attested."""
        result = await self.sweeper.sweep(ns, name)
        return result.admitted if result is not None else 0

    async def round(self, ns: str, name: str) -> int:
        """One sweep and the reconcile after it; returns how many endpoints are attested."""
        result = await self.sweeper.sweep(ns, name)
        await self.reconcile(ns, name)
        return result.admitted if result is not None else 0

    async def aclose(self) -> None:
        await self.sweeper.aclose()
        await self.kube.aclose()


@pytest.fixture
def operator_here(
    sandbox: Sandbox, crds: None, tmp_path: Path
) -> Iterator[tuple[InProcessOperator, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    here = InProcessOperator(sandbox, tmp_path / "release-key.pem")
    yield here, loop
    loop.run_until_complete(here.aclose())
    loop.close()


def steady_pool(name: str, replicas: int = 2) -> Obj:
    """Sweeps every 3 s, leases of 5 minutes: a published expiry has minutes to run."""
    pool = attested_pool(name, replicas)
    pool["spec"]["attestation"]["maxEvidenceAge"] = "5m"
    return pool


def _attest_two_pods(
    kube: KubeRest,
    namespace: str,
    name: str,
    loop: asyncio.AbstractEventLoop,
    here: InProcessOperator,
    *,
    sweeps_alone: bool = False,
) -> None:
    """Create a 2-replica pool, reconcile it once, and sweep it (each sweep followed by a
    reconcile, unless `sweeps_alone`) until both of its pods are attested."""
    kube.post(f"{API}/{namespace}/minerpools", steady_pool(name))
    loop.run_until_complete(here.reconcile(namespace, name))
    wait_for(
        lambda: len(running_pods(kube, namespace, name)) == 2,
        timeout_s=120,
        what="2 miner pods run by the runner",
    )
    step = here.sweep if sweeps_alone else here.round
    wait_for(
        lambda: loop.run_until_complete(step(namespace, name)) == 2,
        timeout_s=60,
        interval_s=1,
        what="both pods attested",
    )


def versions(kube: KubeRest, paths: list[str]) -> dict[str, str]:
    return {p: kube.get(p)["metadata"]["resourceVersion"] for p in paths}


def test_a_steady_in_cluster_pool_costs_no_writes(
    kube: KubeRest,
    namespace: str,
    operator_here: tuple[InProcessOperator, asyncio.AbstractEventLoop],
) -> None:
    here, loop = operator_here
    _attest_two_pods(kube, namespace, "steady", loop, here)
    loop.run_until_complete(here.round(namespace, "steady"))  # settles the pool's status
    slices = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
    watched = [f"{slices}/{admission.slice_name('steady')}", f"{API}/{namespace}/minerpools/steady"]
    watched += [
        f"/api/v1/namespaces/{namespace}/pods/{p['metadata']['name']}"
        for p in running_pods(kube, namespace, "steady")
    ]
    notes_before = {p: kube.get(p)["metadata"].get("annotations") for p in watched[2:]}
    before = versions(kube, watched[:2])
    here.kube.writes.clear()

    admitted = [loop.run_until_complete(here.round(namespace, "steady")) for _ in range(4)]

    assert admitted == [2] * STEADY_SWEEPS
    assert here.kube.writes == []
    assert versions(kube, watched[:2]) == before
    assert {p: kube.get(p)["metadata"].get("annotations") for p in watched[2:]} == notes_before


def test_a_steady_external_pool_costs_no_writes(
    kube: KubeRest,
    sandbox: Sandbox,
    namespace: str,
    tmp_path: Path,
    operator_here: tuple[InProcessOperator, asyncio.AbstractEventLoop],
) -> None:
    here, loop = operator_here
    with agent_outside(sandbox, tmp_path, TEEROUTE_AGENT_POOL=f"{namespace}/remote") as url:
        pool = steady_pool("remote")
        for key in ("replicas", "images", "placement", "resources"):
            del pool["spec"][key]
        pool["spec"]["endpoints"] = [
            {"name": "live", "url": url},
            {"name": "dead", "url": "http://127.0.0.1:9"},  # unreachable: a steady failure
        ]
        kube.post(f"{API}/{namespace}/minerpools", pool)
        wait_for(
            lambda: loop.run_until_complete(here.round(namespace, "remote")) == 1,
            timeout_s=30,
            interval_s=1,
            what="the live endpoint attested",
        )
        loop.run_until_complete(here.round(namespace, "remote"))
        path = f"{API}/{namespace}/minerpools/remote"
        before = versions(kube, [path])
        here.kube.writes.clear()

        admitted = [loop.run_until_complete(here.round(namespace, "remote")) for _ in range(4)]

        assert admitted == [1] * STEADY_SWEEPS
        assert here.kube.writes == []
        assert versions(kube, [path]) == before
        entries = {e["name"]: e for e in kube.get(path)["status"]["endpoints"]}
        expires = admission.parse_time(entries["live"]["expiresAt"])
        assert expires is not None and expires > dt.datetime.now(dt.UTC)
        assert entries["dead"]["failure"].startswith("unreachable")


def test_a_sweep_that_admits_endpoints_brings_the_pools_status_up_to_date(
    kube: KubeRest,
    namespace: str,
    operator_here: tuple[InProcessOperator, asyncio.AbstractEventLoop],
) -> None:
    """The operator's own pod annotation writes trigger no reconcile (changes.PodChanges), so
    the sweep itself must refresh the status when its attested count moved, and only then."""
    here, loop = operator_here
    _attest_two_pods(kube, namespace, "fresh", loop, here, sweeps_alone=True)
    path = f"{API}/{namespace}/minerpools/fresh"
    assert kube.get(path)["status"]["attestedReplicas"] == 2  # no reconcile ran but the sweep's
    refreshes = len(here.status_refreshes)
    assert refreshes >= 1

    assert [loop.run_until_complete(here.sweep(namespace, "fresh")) for _ in range(3)] == [2] * 3
    assert len(here.status_refreshes) == refreshes  # nothing moved: no refresh
