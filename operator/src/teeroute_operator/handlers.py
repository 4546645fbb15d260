"""kopf handlers: thin. Each trigger names the object to reconcile and hands it to
reconcile.py, which reads the cluster, decides with pure functions and applies.

    MinerPool created/updated/resumed, or its timer      -> reconcile_pool
    MinerPool exists (a daemon per pool)                 -> sweeper.run: attestation sweeps
    a Deployment/Service/PDB/Pod the operator manages   -> reconcile_pool of its pool (drift)
    a MinerPool event that a Route reads (changes.py)    -> reconcile_routes_in its namespace
    Route created/updated/resumed, or its timer          -> reconcile_routes_in its namespace

Pod, child and Route work is coalesced per pool or namespace (coalesce.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from teeroute.kube import Kube, load_config
from teeroute.sealing.secrets import Signer
from teeroute_operator import (
    builders,
    changes,
    coalesce,
    egress,
    events,
    podstore,
    podwatch,
    reconcile,
)
from teeroute_operator.leases import LeaseBook
from teeroute_operator.metrics import Metrics
from teeroute_operator.settings import OperatorSettings
from teeroute_operator.sweeper import Sweeper
from teeroute_operator.trust import TrustStore

GROUP, VERSION = "teeroute.dev", "v1alpha1"
MANAGED = {"app.kubernetes.io/managed-by": builders.MANAGED_BY}
MANAGED_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED.items())
CHILD_RESOURCES = (
    ("apps", "v1", "deployments", "Deployment"),
    ("", "v1", "services", "Service"),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
)
"""Children whose events kopf hands to the operator; the pods have a watch of their own."""
Obj = dict[str, Any]
KubeRef = Callable[[], Kube]
SweeperRef = Callable[[], Sweeper]
PodsRef = Callable[[], podstore.PodSource]


def build_registry(settings: OperatorSettings, signer: Signer | None) -> kopf.OperatorRegistry:
    """`signer`: the operator's release key (release_key.load), None when it has none."""
    registry = kopf.OperatorRegistry()
    release_key = signer.public if signer else b""
    leases = LeaseBook(signer)
    store = podstore.PodStore(scopes=len(settings.namespaces) or 1)
    poster = events.EventPoster()
    emit = poster.emit
    kube, sweeper, pods = _register_lifecycle(registry, settings, signer, leases, store, poster)
    status_of = _register_pools(registry, settings, kube, release_key, leases, sweeper, pods, emit)
    _register_pods(registry, settings, kube, sweeper, status_of, store)
    _register_sweeps(registry, settings, sweeper)
    _register_routes(registry, settings, kube, emit)
    return registry


def _register_lifecycle(
    registry: kopf.OperatorRegistry,
    settings: OperatorSettings,
    signer: Signer | None,
    leases: LeaseBook,
    store: podstore.PodStore,
    poster: events.EventPoster,
) -> tuple[KubeRef, SweeperRef, PodsRef]:
    state: dict[str, Any] = {}
    operator = settings
    metrics = Metrics()
    release_key = signer.public if signer else b""
    emit = poster.emit

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        _configure_kopf(settings)
        state["kube"] = Kube(load_config(operator.kubeconfig), field_manager=operator.field_manager)
        state["events"] = asyncio.create_task(poster.run(state["kube"]))  # ends with the process
        state["pods"] = store.source(podstore.listed(state["kube"]))
        state["sweeper"] = Sweeper(
            state["kube"],
            TrustStore(operator.trust_dir, operator.allow_simulated_tee),
            metrics,
            emit,
            signer=signer,
            concurrency=operator.attestation_concurrency,
            timeout_s=operator.attestation_timeout_seconds,
            egress_allow=egress.allow_of(operator),
            gateway_keys=operator.gateway_key_set(),
            after_sweep=lambda ns, name: reconcile.reconcile_pool(
                state["kube"],
                ns,
                name,
                emit,
                release_key=release_key,
                leases=leases,
                gateway_keys=operator.gateway_keys,
                scope=reconcile.Scope.STATUS,
                pods=state["pods"],
            ),
            leases=leases,
            pods=state["pods"],
        )
        if operator.metrics_port:
            metrics.serve(operator.metrics_port, token=operator.metrics_token())

    # No cleanup handler closes these clients: kopf runs cleanup while handlers, timers and
    # sweeps may still be finishing (it gives them seconds, then cancels them), and closing
    # the clients under them failed them mid-request and made a SIGTERM exit 1
    # (tests/operator/test_restarts.py). Their connections end with the process.

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        cfg = load_config(operator.kubeconfig)
        return kopf.ConnectionInfo(
            server=cfg.server,
            ca_data=cfg.ca_pem,
            certificate_data=cfg.cert_pem,
            private_key_data=cfg.key_pem,
            token=cfg.bearer_token(),
            default_namespace=cfg.namespace,
        )

    return (lambda: state["kube"]), (lambda: state["sweeper"]), (lambda: state["pods"])


def _register_sweeps(
    registry: kopf.OperatorRegistry, settings: OperatorSettings, sweeper: SweeperRef
) -> None:
    # A daemon per pool: kopf starts it when the pool appears (or the operator starts) and
    # stops it when the pool is deleted; the sweeper keeps its own interval from the spec.
    @kopf.daemon(GROUP, VERSION, "minerpools", registry=registry, cancellation_timeout=5.0)
    async def sweep_pool(*, namespace: str | None, name: str, stopped: Any, **_: Any) -> None:
        if namespace:
            await sweeper().run(namespace, name, Stopped(stopped), settings.attestation_jitter)


class Stopped:
    """kopf's `stopped` flag for an async daemon, waited on by polling. kopf's own
    `await stopped.wait(t)` runs a helper task that ends in TimeoutError; at shutdown kopf
    collects every task and re-raises that error, so a SIGTERM during a sweep's pause made
    the process exit 1 (tests/operator/test_restarts.py)."""

    # One wake-up per pool per second: ~500/s at 500 pools, well under 1 % of a core, and a
    # SIGTERM still ends a pause within a second (the restart tests allow 10 s)
    POLL_S = 1.0

    def __init__(self, flag: Any) -> None:
        self._flag = flag

    def __bool__(self) -> bool:
        return bool(self._flag)

    async def wait(self, timeout: float) -> None:
        """Until the flag is set or `timeout` seconds passed, whichever is first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._flag and (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(self.POLL_S, left))


def _register_pools(
    registry: kopf.OperatorRegistry,
    settings: OperatorSettings,
    kube: KubeRef,
    release_key: bytes,
    leases: LeaseBook,
    sweeper: SweeperRef,
    pods: PodsRef,
    emit: reconcile.EventSink,
) -> coalesce.Coalescer[tuple[str, str]]:
    """Returns the pools' status refresh (a coalescer) for their pods' events."""

    @_reconciler(registry, settings, "minerpools", "pool")
    async def pool_changed(
        *, namespace: str | None, name: str, reason: str | None = None, **_: Any
    ) -> None:
        if namespace:
            await reconcile.reconcile_pool(
                kube(),
                namespace,
                name,
                emit,
                release_key=release_key,
                leases=leases,
                gateway_keys=settings.gateway_keys,
                # a pool just created has no children yet to prune (timers pass no reason)
                scope=reconcile.Scope.CHILDREN if reason == "create" else reconcile.Scope.FULL,
                pods=pods(),
            )

    def reconciler(scope: reconcile.Scope) -> coalesce.Coalescer[tuple[str, str]]:
        async def work(key: tuple[str, str]) -> None:
            await reconcile.reconcile_pool(
                kube(),
                *key,
                emit,
                release_key=release_key,
                leases=leases,
                gateway_keys=settings.gateway_keys,
                scope=scope,
                pods=pods(),
            )

        return coalesce.Coalescer(work)

    return _register_children(registry, reconciler)


def _register_children(
    registry: kopf.OperatorRegistry,
    reconciler: Callable[[reconcile.Scope], coalesce.Coalescer[tuple[str, str]]],
) -> coalesce.Coalescer[tuple[str, str]]:
    """Events of the pools' children. A pool's children change in bursts (a rollout: every
    pod several times): one reconcile per burst, in the background (coalesce.py), not one
    per event, and only of what the event can have changed (changes.py). Returns the
    pools' status refresh, which their pods' events poke too."""
    children_of = reconciler(reconcile.Scope.CHILDREN)
    pods_of = reconciler(reconcile.Scope.STATUS)
    child_changes = changes.ChildChanges()

    def child_changed(kind: str) -> Callable[..., Awaitable[None]]:
        # the kind from the registration: a listed object (kopf's first list) has none
        async def changed(
            *,
            namespace: str | None,
            labels: Mapping[str, str],
            body: Mapping[str, Any],
            type: str | None,  # kopf's name for the event type
            **_: Any,
        ) -> None:
            pool = labels.get(builders.POOL_LABEL)
            if not (namespace and pool):
                return
            need = child_changes.need(type, kind, dict(body))
            if need is changes.Need.CHILDREN:
                children_of.poke((namespace, pool))
            elif need is changes.Need.STATUS:
                pods_of.poke((namespace, pool))

        return changed

    for group, version, plural, kind in CHILD_RESOURCES:
        kopf.on.event(group, version, plural, labels=MANAGED, registry=registry)(
            child_changed(kind)
        )

    return pods_of


def _register_pods(
    registry: kopf.OperatorRegistry,
    settings: OperatorSettings,
    kube: KubeRef,
    sweeper: SweeperRef,
    pods_of: coalesce.Coalescer[tuple[str, str]],
    store: podstore.PodStore,
) -> None:
    """The pools' pods: the operator's own watch (podwatch.py), not a kopf handler per
    event, kept in `store` for the sweeps and reconciles to read. A pod that changed what
    the operator reads wakes its pool's sweeper and refreshes the pool's status."""
    pod_changes = changes.PodChanges()

    def pod_changed(event_type: str, pod: Obj) -> None:
        store.apply(event_type, pod)  # first: what this event wakes reads the store
        meta = pod.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        # a DELETED made up after a re-list has no labels: the pool it was last seen in
        pool = (meta.get("labels") or {}).get(builders.POOL_LABEL) or pod_changes.pool_of(
            namespace, name
        )
        change = pod_changes.seen(event_type, pod)
        if change.status and namespace and pool:
            if change.sweep:
                sweeper().wake(namespace, pool)  # a pod that just became ready: challenged now
            pods_of.poke((namespace, pool))

    following: dict[str, asyncio.Task[None]] = {}

    @kopf.on.startup(registry=registry)
    async def follow_pods(**_: Any) -> None:
        following["pods"] = asyncio.create_task(
            podwatch.follow(
                kube(), settings.namespaces, MANAGED_SELECTOR, pod_changed, store.synced
            )
        )

    @kopf.on.cleanup(registry=registry)
    async def stop_following(**_: Any) -> None:
        task = following.pop("pods", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _register_routes(
    registry: kopf.OperatorRegistry,
    settings: OperatorSettings,
    kube: KubeRef,
    emit: reconcile.EventSink,
) -> None:
    # Once per burst of pool events, in the background (coalesce.py): not inside each pool's
    # own handler, which would then wait behind every Route of its namespace.
    routes_in: coalesce.Coalescer[str] = coalesce.Coalescer(
        lambda ns: reconcile.reconcile_routes_in(kube(), ns, emit)
    )

    pool_changes = changes.PoolChanges()

    @kopf.on.event(GROUP, VERSION, "minerpools", registry=registry)
    async def pools_moved(
        *,
        namespace: str | None,
        body: Mapping[str, Any],
        type: str | None,  # kopf's name for the event type
        **_: Any,
    ) -> None:
        if namespace and pool_changes.relevant(type, dict(body)):
            routes_in.poke(namespace)

    # A Route's own triggers poke its namespace too: each Route reconciled on its own read
    # and validated every pool of its namespace, which for 200 Routes applied together was
    # most of the operator's work while they came up.
    @_reconciler(registry, settings, "routes", "route")
    async def route_changed(*, namespace: str | None, **_: Any) -> None:
        if namespace:
            routes_in.poke(namespace)


Handler = Callable[..., Awaitable[None]]


def _reconciler(
    registry: kopf.OperatorRegistry, settings: OperatorSettings, plural: str, handler_id: str
) -> Callable[[Handler], Handler]:
    """Register a reconcile handler of `plural` for resume, create, update and the periodic
    resync. Explicit ids: kopf keeps a failed handler's progress in an annotation named after
    it, and the default (`_register_pools.<locals>.pool_changed`) is not a valid annotation
    key, so a handler that failed once was retried forever against a 422."""

    def register(fn: Handler) -> Handler:
        for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
            on(GROUP, VERSION, plural, id=handler_id, registry=registry)(fn)
        kopf.timer(
            GROUP,
            VERSION,
            plural,
            id=handler_id,
            interval=settings.resync_seconds,
            initial_delay=settings.resync_seconds,  # the resume/create handler runs first
            registry=registry,
        )(fn)
        return fn

    return register


def _configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Our own annotation prefix and finalizer name instead of kopf's defaults; only
    warnings from handlers become Events (we post the meaningful ones ourselves)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = events.COMPONENT  # the Events we post say the same
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
