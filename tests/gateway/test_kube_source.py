"""The cluster source against the sandbox's real apiserver: the test plays the operator
(writes the attested EndpointSlice and the external leases, with admission records signed by
a key of its own that the source pins) and checks
what inventory the gateway is handed, as objects change, as time passes, while the watch
times out and reconnects, and while the apiserver is out of reach."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute import admission, admission_record
from teeroute.admission import AdmittedEndpoint, build_slice, rfc3339
from teeroute.admission_record import AdmissionRecord
from teeroute.kube import ClusterConfig, Kube, paths
from teeroute.kube.client import ADDED, DELETED, MODIFIED, SYNCED, ApiError, _WatchState
from teeroute.kube.config import from_kubeconfig
from teeroute_gateway.catalog import Endpoint, Inventory
from teeroute_gateway.sources.kube import KubeSource
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import wait_for

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_RBAC = ROOT / "e2e" / "sandbox" / "gateway-rbac.yaml"
API = "teeroute.dev/v1alpha1"
MEASUREMENT = "ab" * 48
SIMULATED_TEE_IP = "10.244.250.7"  # a listed address; nothing needs to listen there
Obj = dict[str, Any]
OPERATOR = ed25519.Ed25519PrivateKey.generate()
OPERATOR_KEY = OPERATOR.public_key().public_bytes_raw()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def later(seconds: float) -> str:
    return rfc3339(now() + dt.timedelta(seconds=seconds))


# --- objects, as the operator and a user would write them -----------------------------


def in_cluster_pool(name: str) -> Obj:
    return {
        "apiVersion": API,
        "kind": "MinerPool",
        "metadata": {"name": name},
        "spec": {
            "models": [{"name": "meta-llama/Llama-3.1-8B-Instruct"}],
            "tee": {"type": "simulated"},
            "placement": {"profile": "kind"},
            "replicas": 1,
            "images": {
                "agent": "teeroute.dev/agent:0.1.0",
                "engine": "teeroute.dev/engine-sim:0.1.0",
            },
            "pricing": {"inputPerMillion": "0.10", "outputPerMillion": "0.20"},
        },
    }


def external_pool(name: str, endpoints: dict[str, str]) -> Obj:
    return {
        "apiVersion": API,
        "kind": "MinerPool",
        "metadata": {"name": name},
        "spec": {
            "models": [{"name": "meta-llama/Llama-3.1-8B-Instruct"}],
            "tee": {"type": "tdx"},
            "pricing": {"inputPerMillion": "0.05", "outputPerMillion": "0.08"},
            "endpoints": [{"name": n, "url": u} for n, u in endpoints.items()],
        },
    }


def route(name: str, model: str, pools: list[str]) -> Obj:
    return {
        "apiVersion": API,
        "kind": "Route",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "backends": [{"pool": p} for p in pools],
            "constraints": {"allowedTee": ["simulated", "tdx"]},
        },
    }


def signed(
    pool_key: str,
    endpoint: str,
    url: str,
    expires_in_s: float,
    tee: str,
    key: ed25519.Ed25519PrivateKey = OPERATOR,
) -> str:
    """An admission record as the operator signs it."""
    record = AdmissionRecord(
        pool=pool_key,
        endpoint=endpoint,
        url=url,
        tee=tee,
        measurement=MEASUREMENT,
        chip_id=f"chip-{endpoint}",
        hpke_public_key=base64.b64encode(b"\x11" * 32).decode(),
        signing_public_key=base64.b64encode(b"\x22" * 32).decode(),
        attested_at=now() - dt.timedelta(seconds=20),
        expires_at=now() + dt.timedelta(seconds=expires_in_s),
        pod_uid=f"uid-{endpoint}",
    )
    return admission_record.sign(record, key.sign)


def records_patch(tokens: list[str]) -> Obj:
    notes = {admission_record.RECORDS_ANNOTATION: admission_record.dump_list(tokens)}
    return {"metadata": {"annotations": notes}}


def pod_record(ns: str, pool: str, pod: str, expires_in_s: float, **options: Any) -> str:
    url = f"http://{SIMULATED_TEE_IP}:8443"
    return signed(f"{ns}/{pool}", pod, url, expires_in_s, "simulated", **options)


def attested_slice(ns: str, pool: str, pod: str, expires_in_s: float) -> Obj:
    expiry = now() + dt.timedelta(seconds=expires_in_s)
    entry = AdmittedEndpoint(SIMULATED_TEE_IP, 8443, expiry, pod=pod)
    obj = build_slice(namespace=ns, pool=pool, port=8443, endpoints=[entry])
    obj["metadata"]["annotations"] |= records_patch([pod_record(ns, pool, pod, expires_in_s)])[
        "metadata"
    ]["annotations"]
    return obj


def lease(ns: str, name: str, url: str, expires_in_s: float, **extra: str) -> Obj:
    return {
        "name": name,
        "url": url,
        "attestedAt": later(-5),
        "expiresAt": later(expires_in_s),
        "tee": "tdx",
        "measurement": MEASUREMENT,
        "chipId": f"chip-{name}",
        "admissionRecord": signed(f"{ns}/ext", name, url, expires_in_s, "tdx"),
        **extra,
    }


def collection(api_version: str, kind: str, ns: str) -> str:
    return paths.collection(api_version, kind, ns)


def slice_path(ns: str, pool: str) -> str:
    return f"{collection('discovery.k8s.io/v1', 'EndpointSlice', ns)}/{admission.slice_name(pool)}"


# --- the source under test, on its own event loop ---------------------------------------


class RunningSource:
    """A KubeSource running in a thread; the test reads the inventories it was handed."""

    def __init__(self, config: ClusterConfig, **options: Any) -> None:
        self.config = config
        self.options = options
        self.delivered: list[Inventory] = []
        self.source: KubeSource | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> RunningSource:
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the source did not stop when cancelled"

    async def _main(self) -> None:
        kube = Kube(self.config, field_manager="teeroute-gateway-test")
        self.source = KubeSource(
            kube, on_change=self.delivered.append, operator_key=OPERATOR_KEY, **self.options
        )
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.ensure_future(self.source.run())
        self._started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await kube.aclose()

    @property
    def ready(self) -> bool:
        return self.source is not None and self.source.ready

    @property
    def latest(self) -> Inventory:
        return self.delivered[-1] if self.delivered else Inventory()

    def endpoints(self, pool_key: str) -> dict[str, Endpoint]:
        return {e.key: e for e in self.latest.endpoints.get(pool_key, ())}

    def routes(self, ns: str) -> set[str]:
        return {r.metadata.name for r in self.latest.routes if r.metadata.namespace == ns}

    def pools(self, ns: str) -> set[str]:
        return {p.metadata.name for p in self.latest.pools if p.metadata.namespace == ns}


@pytest.fixture(scope="module")
def crds(kubectl: Callable[..., Any], kube: KubeRest) -> None:
    kubectl("apply", "-f", str(ROOT / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/minerpools.teeroute.dev",
        "crd/routes.teeroute.dev",
        "--timeout=60s",
    )
    wait_for(lambda: kube.get(f"/apis/{API}"), what="the teeroute API")


@pytest.fixture
def admin_config(sandbox: Sandbox) -> ClusterConfig:
    return from_kubeconfig(sandbox.kubeconfig)


@pytest.fixture
def start_source() -> Iterator[Callable[..., RunningSource]]:
    running: list[RunningSource] = []

    def start(config: ClusterConfig, **options: Any) -> RunningSource:
        source = RunningSource(config, **options).start()
        running.append(source)
        return source

    yield start
    for source in running:
        source.stop()


def keys(source: RunningSource, pool_key: str) -> set[str]:
    return set(source.endpoints(pool_key))


# --- tests -------------------------------------------------------------------------------


def test_inventory_follows_the_attested_objects(
    kube: KubeRest,
    crds: None,
    namespace: str,
    admin_config: ClusterConfig,
    start_source: Callable[..., RunningSource],
) -> None:
    ns = namespace
    pools = collection(API, "MinerPool", ns)
    kube.post(pools, in_cluster_pool("llama"))
    kube.post(
        pools, external_pool("ext", {"m1": "https://m1.example:8443/", "m2": "https://m2.example"})
    )
    kube.patch(
        f"{pools}/ext/status",
        {
            "status": {
                "endpoints": [
                    lease(ns, "m1", "https://m1.example:8443/", 300),
                    {**lease(ns, "m2", "https://m2.example", 300), "admissionRecord": ""},
                ]
            }
        },
    )
    kube.post(
        collection("discovery.k8s.io/v1", "EndpointSlice", ns),
        attested_slice(ns, "llama", "llama-p1", 300),
    )
    kube.post(collection(API, "Route", ns), route("llama", "llama", ["llama", "ext"]))

    source = start_source(admin_config, namespaces=[ns])
    in_cluster, external = f"{ns}/llama/llama-p1", f"{ns}/ext/m1"
    wait_for(
        lambda: (
            source.ready
            and keys(source, f"{ns}/llama") == {in_cluster}
            and keys(source, f"{ns}/ext") == {external}
            and source.routes(ns) == {"llama"}
        ),
        timeout_s=10,
        what="the first inventory with both pools' signed endpoints",
    )
    pod_endpoint = source.endpoints(f"{ns}/llama")[in_cluster]
    assert pod_endpoint.url == f"http://{SIMULATED_TEE_IP}:8443"
    assert pod_endpoint.tee == "simulated"
    assert pod_endpoint.attested_at is not None
    assert pod_endpoint.chip_id == "chip-llama-p1"
    assert source.endpoints(f"{ns}/ext")[external].url == "https://m1.example:8443"

    # The operator re-signs it with an expiry in the past: not admitted; renewed: back.
    path = slice_path(ns, "llama")
    kube.patch(path, records_patch([pod_record(ns, "llama", "llama-p1", -1)]))
    wait_for(lambda: not keys(source, f"{ns}/llama"), timeout_s=5, what="the expired record gone")
    kube.patch(path, records_patch([pod_record(ns, "llama", "llama-p1", 300)]))
    wait_for(lambda: keys(source, f"{ns}/llama") == {in_cluster}, timeout_s=5, what="it back")

    # A record signed by any other key is not routed.
    forged = pod_record(ns, "llama", "llama-p1", 300, key=ed25519.Ed25519PrivateKey.generate())
    kube.patch(path, records_patch([forged]))
    wait_for(lambda: not keys(source, f"{ns}/llama"), timeout_s=5, what="the forged record out")
    kube.patch(path, records_patch([pod_record(ns, "llama", "llama-p1", 300)]))
    wait_for(lambda: keys(source, f"{ns}/llama") == {in_cluster}, timeout_s=5, what="it back")

    # The slice deleted: gone.
    kube.delete(slice_path(ns, "llama"))
    wait_for(lambda: not keys(source, f"{ns}/llama"), timeout_s=5, what="the deleted slice's entry")

    # A Route created later appears; a pool deleted disappears with its endpoints.
    kube.post(collection(API, "Route", ns), route("second", "other-model", ["ext"]))
    wait_for(lambda: source.routes(ns) == {"llama", "second"}, timeout_s=5, what="the new Route")
    kube.delete(f"{pools}/ext")
    wait_for(
        lambda: source.pools(ns) == {"llama"} and f"{ns}/ext" not in source.latest.endpoints,
        timeout_s=5,
        what="the deleted pool gone",
    )


def test_expired_attestation_leaves_the_inventory_without_any_change(
    kube: KubeRest,
    crds: None,
    namespace: str,
    admin_config: ClusterConfig,
    start_source: Callable[..., RunningSource],
) -> None:
    ns = namespace
    kube.post(collection(API, "MinerPool", ns), in_cluster_pool("llama"))
    kube.post(
        collection("discovery.k8s.io/v1", "EndpointSlice", ns),
        attested_slice(ns, "llama", "llama-p1", 4),
    )
    source = start_source(admin_config, namespaces=[ns], resync_s=0.5)
    wait_for(lambda: keys(source, f"{ns}/llama"), timeout_s=5, what="the endpoint admitted")
    # Nothing is written from now on: only the periodic rebuild can notice the expiry.
    wait_for(lambda: not keys(source, f"{ns}/llama"), timeout_s=10, what="the endpoint to expire")


def test_watch_reopened_after_its_timeout_keeps_events_flowing(
    namespace: str, admin_config: ClusterConfig
) -> None:
    ns = namespace
    path = collection("v1", "ConfigMap", ns)

    def config_map(name: str) -> Obj:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}

    async def scenario() -> list[tuple[str, str]]:
        kube = Kube(admin_config)
        seen: list[tuple[str, str]] = []

        async def follow() -> None:
            async for type_, obj in kube.watch(path, timeout_s=1):
                seen.append((type_, (obj.get("metadata") or {}).get("name", "")))

        async def until(what: tuple[str, str]) -> None:
            deadline = time.monotonic() + 10
            while what not in seen:
                assert time.monotonic() < deadline, f"no {what} in {seen}"
                await asyncio.sleep(0.05)

        task = asyncio.create_task(follow())
        try:
            await until((SYNCED, ""))
            await kube.create(path, config_map("first"))
            await until((ADDED, "first"))
            await asyncio.sleep(2.5)  # the server ends the 1 s watch twice meanwhile
            await kube.create(path, config_map("second"))
            await until((ADDED, "second"))
            await kube.delete(f"{path}/first")
            await until((DELETED, "first"))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await kube.aclose()
        return seen

    seen = asyncio.run(scenario())
    # Reopened from the last resourceVersion, not re-listed: one list, no duplicates.
    assert [e for e in seen if e[1] != "kube-root-ca.crt"] == [
        (SYNCED, ""),
        (ADDED, "first"),
        (ADDED, "second"),
        (DELETED, "first"),
    ]


def test_expired_resource_version_is_gone_and_a_relist_reports_only_the_difference(
    namespace: str, admin_config: ClusterConfig
) -> None:
    """What `Kube.watch` does on 410 Gone, step by step against the real apiserver: a watch
    from a version long compacted away is refused with 410, and the re-list that follows
    tells the caller only what changed since its view (deletions included)."""
    path = collection("v1", "ConfigMap", namespace)

    async def scenario() -> tuple[int, list[tuple[str, str]]]:
        kube = Kube(admin_config)
        try:
            for name in ("kept", "changed", "deleted"):
                await kube.create(path, {"metadata": {"name": name}, "data": {"v": "1"}})
            state = _WatchState(path, "")
            listed = [
                (t, o.get("metadata", {}).get("name", "")) async for t, o in kube._relist(state)
            ]
            assert (SYNCED, "") in listed
            await kube.merge_patch(f"{path}/changed", {"data": {"v": "2"}})
            await kube.delete(f"{path}/deleted")
            await kube.create(path, {"metadata": {"name": "added"}})

            state.resource_version = "1"  # long gone
            with pytest.raises(ApiError) as gone:
                async for _ in kube._watch_once(state, 5):
                    pass
            relisted = [(t, o["metadata"]["name"]) async for t, o in kube._relist(state) if o]
            return gone.value.status, relisted
        finally:
            await kube.aclose()

    status, relisted = asyncio.run(scenario())
    assert status == 410
    relisted = [e for e in relisted if e[1] != "kube-root-ca.crt"]  # the controller's, racing
    assert sorted(relisted) == [(ADDED, "added"), (DELETED, "deleted"), (MODIFIED, "changed")]


def test_source_with_short_watch_timeouts_sees_later_changes(
    kube: KubeRest,
    crds: None,
    namespace: str,
    admin_config: ClusterConfig,
    start_source: Callable[..., RunningSource],
) -> None:
    ns = namespace
    source = start_source(admin_config, watch_timeout_s=1)  # the whole cluster
    wait_for(lambda: source.ready, timeout_s=10, what="the first inventory")
    time.sleep(2.5)  # every watch has been ended by the server and reopened at least once
    kube.post(collection(API, "Route", ns), route("late", "llama", ["llama"]))
    wait_for(lambda: source.routes(ns) == {"late"}, timeout_s=5, what="the Route created later")


def test_gateway_rbac_lets_the_source_watch_and_nothing_more(
    kube: KubeRest,
    kubectl: Callable[..., Any],
    crds: None,
    namespace: str,
    admin_config: ClusterConfig,
    start_source: Callable[..., RunningSource],
) -> None:
    kubectl("create", "namespace", "teeroute-system", check=False)
    kubectl("apply", "-f", str(GATEWAY_RBAC))
    try:
        _check_gateway_rbac(kube, namespace, admin_config, start_source)
    finally:  # the ClusterRole is cluster-wide: left behind, it blocks `helm install`
        kubectl("delete", "-f", str(GATEWAY_RBAC), "--ignore-not-found", check=False)


def _check_gateway_rbac(
    kube: KubeRest,
    namespace: str,
    admin_config: ClusterConfig,
    start_source: Callable[..., RunningSource],
) -> None:
    token = kube.post(
        "/api/v1/namespaces/teeroute-system/serviceaccounts/teeroute-gateway/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )["status"]["token"]
    gateway = ClusterConfig(server=admin_config.server, ca_pem=admin_config.ca_pem, token=token)
    kube.post(collection(API, "Route", namespace), route("llama", "llama", ["llama"]))
    source = start_source(gateway)
    wait_for(lambda: source.routes(namespace) == {"llama"}, timeout_s=10, what="RBAC-ed source")

    def allowed(verb: str, group: str, resource: str, subresource: str = "") -> bool:
        review = kube.post(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": "system:serviceaccount:teeroute-system:teeroute-gateway",
                    "groups": ["system:serviceaccounts"],
                    "resourceAttributes": {
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                        "subresource": subresource,
                        "namespace": namespace,
                    },
                },
            },
        )
        return bool(review["status"].get("allowed"))

    for group, resource in [
        ("teeroute.dev", "routes"),
        ("teeroute.dev", "minerpools"),
        ("discovery.k8s.io", "endpointslices"),
    ]:
        assert all(allowed(v, group, resource) for v in ("get", "list", "watch"))
        assert not any(allowed(v, group, resource) for v in ("create", "patch", "delete"))
    assert not allowed("list", "", "pods")  # nothing on a pod is trusted, so none is read
    assert not allowed("patch", "teeroute.dev", "minerpools", "status")
    assert not allowed("get", "", "secrets")
    assert not allowed("get", "", "configmaps")


# --- the apiserver out of reach ----------------------------------------------------------


class CuttableProxy:
    """A TCP relay to the apiserver that the test can cut (refusing and dropping every
    connection) and restore, on the same address, so TLS still verifies."""

    def __init__(self, host: str, target: tuple[str, int]) -> None:
        self.host, self.target = host, target
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    def restore(self) -> None:
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _shutdown(self) -> None:
        await self._close()
        relays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}


def test_unreachable_apiserver_keeps_the_last_objects_and_expiry_still_applies(
    kube: KubeRest,
    crds: None,
    namespace: str,
    admin_config: ClusterConfig,
    start_source: Callable[..., RunningSource],
) -> None:
    ns = namespace
    server = urlsplit(admin_config.server)
    assert server.hostname is not None
    proxy = CuttableProxy(server.hostname, (server.hostname, server.port or 443))
    try:
        proxy.restore()  # to learn a port, then cut: the source starts with no apiserver
        proxy.cut()
        config = ClusterConfig(
            server=f"https://{server.hostname}:{proxy.port}",
            ca_pem=admin_config.ca_pem,
            cert_pem=admin_config.cert_pem,
            key_pem=admin_config.key_pem,
        )
        kube.post(collection(API, "MinerPool", ns), in_cluster_pool("llama"))
        kube.post(collection(API, "Route", ns), route("llama", "llama", ["llama"]))
        kube.post(
            collection("discovery.k8s.io/v1", "EndpointSlice", ns),
            attested_slice(ns, "llama", "llama-p1", 12),
        )
        source = start_source(config, namespaces=[ns], resync_s=0.5)
        time.sleep(1.5)  # some failed attempts: the source is up, not ready, not crashed
        assert not source.ready
        assert source.delivered == []

        proxy.restore()
        wait_for(
            lambda: source.ready and keys(source, f"{ns}/llama"),
            timeout_s=15,
            what="the first inventory once the apiserver is reachable",
        )
        proxy.cut()
        delivered = len(source.delivered)
        # Cut off: the objects seen stay, inventories keep coming, and the endpoint goes
        # when its attestation runs out.
        wait_for(lambda: not keys(source, f"{ns}/llama"), timeout_s=20, what="the lease to run out")
        assert len(source.delivered) > delivered
        assert source.routes(ns) == {"llama"}
        assert source.pools(ns) == {"llama"}

        proxy.restore()
        kube.post(collection(API, "Route", ns), route("second", "other", ["llama"]))
        wait_for(
            lambda: source.routes(ns) == {"llama", "second"},
            timeout_s=45,
            what="changes to flow again after the apiserver is back",
        )
    finally:
        proxy.close()
