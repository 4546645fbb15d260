"""The attestation sweeper: per pool, on the policy's interval (with jitter), challenge every
ready endpoint with a fresh nonce, record the verdicts on the pods, and publish the pool's
EndpointSlices with the attested, unexpired endpoints only.

Every apiserver write of a sweep happens only when its content changes or an expiry must move
(publishing.py has the rule): a renewed lease is republished only when the published expiry
would lapse before the next sweep, and pod annotations, slices and an external pool's
status.endpoints are written only when they differ from what the apiserver holds.

Leases are the operator's own (leases.LeaseBook): decided from its challenges alone, never read
back from pods, and published as admission records signed with its key, which is what gateways
route on. Only pods that are the pool's own (ownership.pool_pods) are challenged; a chip
re-admission is read from the MinerPool, never from a pod; an enclave key that already holds a
lease elsewhere is refused (check admission.duplicate-key).

A pool with `secrets` releases them to each enclave whose evidence just verified and pins the
operator's release key, signed by that key and sealed to the HPKE key in that evidence
(release.py decides when, delivery.py delivers, releasing.py does both for each endpoint); an
endpoint whose secrets could not be delivered is not admitted (check `secrets.release`).

A pool with fewer admitted endpoints than it asks for (new, scaling up, pods just started) is
swept again as soon as its pods change (`wake`, from the pods' events) and, while some that were
challenged are not admitted, after 1, 2, 4 ... s up to its interval (`next_wait`): a new miner
takes traffic seconds after it is ready rather than an interval later.

Concurrency is bounded across all pools (one semaphore). A sweep never waits on the
request path: the gateway reads the published slice and its expiries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
from pydantic import ValidationError

from teeroute.api.minerpool import MinerPool
from teeroute.kube import ApiError, Kube, paths
from teeroute.sealing.secrets import Signer
from teeroute_operator import (
    admit,
    builders,
    delivery,
    egress,
    endpointslice,
    ownership,
    podstore,
    publishing,
    release,
)
from teeroute_operator.challenge import Judge, Target, challenge
from teeroute_operator.lease import (
    Outcome,
    Record,
    Rejected,
    ReleaseFailed,
    Transition,
    Unreachable,
    Verified,
    chip_blocked,
    next_record,
)
from teeroute_operator.leases import DUPLICATE_KEY_CHECK, Lease, LeaseBook
from teeroute_operator.metrics import Metrics
from teeroute_operator.nonces import NonceBook
from teeroute_operator.releasing import Attended, Releaser
from teeroute_operator.trust import TrustStore

Obj = dict[str, Any]
EventSink = Callable[[Obj, str, str, str], None]
POOLS = "teeroute.dev/v1alpha1"
RETRY = dt.timedelta(seconds=10)
log = logging.getLogger(__name__)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class SweepResult:
    challenged: int
    admitted: int
    interval: dt.timedelta
    pending: bool = False
    """Fewer endpoints admitted than the pool asks for (`next_wait`, `Sweeper.wake`)."""


FIRST_RETRY_S = 1.0


def next_wait(result: SweepResult, streak: int) -> float:
    """Seconds to the next sweep (before jitter). A pool with endpoints that were challenged
    but not admitted yet (an agent still starting, an external miner coming up) is swept again
    after 1, 2, 4 ... s, up to its interval, so it is admitted within seconds of answering, and
    one that keeps failing costs no more than a few extra sweeps; `streak`: how many such
    sweeps came before this one. A pool only short of ready pods waits for them to wake it."""
    interval = result.interval.total_seconds()
    if not result.pending or result.challenged <= result.admitted:
        return interval
    backoff: float = FIRST_RETRY_S * 2.0 ** min(streak, 16)
    return min(interval, backoff)


class Sweeper:
    def __init__(
        self,
        kube: Kube,
        trust: TrustStore,
        metrics: Metrics,
        emit: EventSink,
        *,
        signer: Signer | None,
        concurrency: int = 32,
        timeout_s: float = 5.0,
        clock: Callable[[], dt.datetime] = _utcnow,
        after_sweep: Callable[[str, str], Awaitable[None]] | None = None,
        leases: LeaseBook | None = None,
        egress_allow: egress.EgressAllow | None = None,
        gateway_keys: frozenset[bytes] = frozenset(),
        pods: podstore.PodSource | None = None,
    ) -> None:
        """`signer`: the operator's release key (None: it has none, so no pool's secrets are
        released). `after_sweep(namespace, pool)` runs after an external pool's sweep, and
        after an in-cluster pool's when its attested count moved (to
        refresh its conditions from the new leases). `leases`: the book shared with the
        reconciler (a new one by default). `gateway_keys`: the operator's configured gateway
        keys (raw); an enclave pinning any other set, none included, is Rejected. `pods`: where
        a sweep reads its pool's pods (podstore.py; by default, a list at each sweep)."""
        self.kube = kube
        self.pods = pods if pods is not None else podstore.listed(kube)
        self.leases = leases if leases is not None else LeaseBook(signer)
        self.egress = egress_allow or egress.EgressAllow()  # which endpoint URLs it may call
        self.gateway_keys = gateway_keys
        self.signer = signer
        self.trust = trust
        self.metrics = metrics
        self.emit = emit
        self.clock = clock
        self.after_sweep = after_sweep
        self.book = NonceBook(ttl=dt.timedelta(seconds=timeout_s * 2))
        self._deadline_s = timeout_s * 2
        self._slots = asyncio.Semaphore(concurrency)
        # Sweeps in progress at once. Each holds what it read (the pool, its pods, its
        # ReplicaSets, its slices) until it ends; when 400 pools' pods became Ready together,
        # 400 sweeps at once took the operator's RSS from ~240 to ~400 MB in seconds.
        self._sweeps = asyncio.Semaphore(concurrency)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=0),
            trust_env=False,
        )
        self.releaser = Releaser(self._http, self._slots, metrics, emit, signer)
        self._wakes: dict[tuple[str, str], asyncio.Event] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def run(self, namespace: str, name: str, stopped: Any, jitter: float) -> None:
        """Sweep the pool until `stopped` (a kopf daemon flag) is set."""
        streak, woken = 0, self._wakes.setdefault((namespace, name), asyncio.Event())
        while not stopped:
            started = time.monotonic()
            woken.clear()
            try:
                async with self._sweeps:
                    result = await self.sweep(namespace, name)
            except ApiError as exc:  # the apiserver hiccuped: leases carry us to the next try
                log.warning("sweep of %s/%s failed: %s", namespace, name, exc)
                result = SweepResult(0, 0, RETRY)
            if result is None:
                break  # the pool is gone
            wait = next_wait(result, streak) * (1 + random.uniform(-jitter, jitter))  # noqa: S311
            streak = streak + 1 if result.pending and result.challenged > result.admitted else 0
            left = max(0.0, wait - (time.monotonic() - started))
            await _pause(stopped, woken if result.pending else None, left)
        self._wakes.pop((namespace, name), None)
        self.metrics.forget_pool(namespace, name)
        self.releaser.forget((namespace, name))
        self.leases.forget((namespace, name))

    def wake(self, namespace: str, name: str) -> None:
        """Something of the pool changed (its pods): if it is still short of admitted
        endpoints, sweep it now rather than at its next time. A pool that has them all is not
        woken: its own annotation writes must not sweep it again."""
        event = self._wakes.get((namespace, name))
        if event is not None:
            event.set()

    async def sweep(self, namespace: str, name: str) -> SweepResult | None:
        body = await self.kube.get_or_none(
            f"{paths.collection(POOLS, 'MinerPool', namespace)}/{name}"
        )
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        try:
            pool = MinerPool.model_validate(body)
        except ValidationError:
            return SweepResult(0, 0, RETRY)  # its reconcile reports the invalid spec
        started = time.perf_counter()
        secrets = await delivery.load(self.kube, pool)  # this sweep's
        if pool.spec.endpoints is not None:
            result = await self._sweep_external(body, pool, secrets)
            self.metrics.sweep_seconds.labels(namespace, name).observe(
                time.perf_counter() - started
            )
            return result
        pods = await self.pods(namespace, name)
        await endpointslice.recover(self.kube, self.leases, pool, pods, self.clock())
        own = await ownership.pool_pods(self.kube, pool, pods)
        judge = self._judge(pool)
        readmit = admit.readmit_map(body["metadata"].get("annotations") or {})
        targets = [p for p in own if admit.challengeable(p)]
        attended = await asyncio.gather(
            *(
                self._attend(
                    body,
                    pool,
                    _pod_target(p),
                    self._pod_record(pool, p),
                    readmit.get(p["metadata"]["name"], ""),
                    judge,
                    secrets,
                    f"pod {p['metadata']['name']}",
                )
                for p in targets
            )
        )
        self.releaser.keep(pool, {p["metadata"]["uid"] for p in targets})
        self.leases.keep(_pool_key(pool), {p["metadata"]["uid"] for p in own})
        updated = {p["metadata"]["uid"]: p for p in pods}
        for pod, done in zip(targets, attended, strict=True):
            updated[pod["metadata"]["uid"]] = await self._record(body, pool, pod, done, readmit)
        admitted = await self.publish(body, pool, list(updated.values()))
        self.metrics.sweep_seconds.labels(namespace, name).observe(time.perf_counter() - started)
        # (a status not written yet is the create reconcile's to write)
        shown = (body.get("status") or {}).get("attestedReplicas") or 0
        if self.after_sweep is not None and shown != admitted:
            # The pool's status counts what this sweep changed. Nothing else would refresh
            # it soon: the operator's own pod annotation writes trigger no reconcile.
            await self.after_sweep(namespace, name)
        pending = admitted < pool.spec.desired_replicas
        return SweepResult(len(targets), admitted, admit.interval(pool), pending)

    async def _sweep_external(
        self, body: Obj, pool: MinerPool, secrets: release.SecretSet
    ) -> SweepResult:
        """External endpoints: the same challenge and lease, kept in the pool's status
        (status.endpoints) since a URL does not fit an EndpointSlice."""
        endpoints = pool.spec.endpoints or []
        self._recover_external(body, pool)
        readmit = admit.readmit_map(body["metadata"].get("annotations") or {})
        judge = self._judge(pool)
        targets = [
            Target(
                key=f"{pool.metadata.uid}/{e.name}",
                url=e.url.rstrip("/"),
                refused=egress.check_endpoint_url(e.url, self.egress),
            )
            for e in endpoints
        ]
        records = [self.leases.record(_pool_key(pool), t.key, t.url) for t in targets]
        attended = await asyncio.gather(
            *(
                self._attend(
                    body,
                    pool,
                    target,
                    record,
                    readmit.get(endpoint.name, ""),
                    judge,
                    secrets,
                    f"endpoint {endpoint.name}",
                )
                for endpoint, target, record in zip(endpoints, targets, records, strict=True)
            )
        )
        self.releaser.keep(pool, {t.key for t in targets})
        self.leases.keep(_pool_key(pool), {t.key for t in targets})
        now = self.clock()
        entries = []
        for endpoint, target, record, done in zip(
            endpoints, targets, records, attended, strict=True
        ):
            after = self._transition(
                body,
                pool,
                record,
                done,
                readmit.get(endpoint.name, ""),
                f"endpoint {endpoint.name}",
            )
            shown = self._renew(pool, target.key, Lease(after, endpoint.name, target.url))
            token = (
                self.leases.token(_pool_key(pool), shown) if shown.record.admitted(now) else None
            )
            entries.append(
                {
                    **shown.record.to_status(endpoint.name, endpoint.url),
                    "admissionRecord": token or "",
                }
            )
        admitted = sum(1 for e in entries if Record.from_status(e).admitted(now))
        path = (
            f"{paths.collection(POOLS, 'MinerPool', pool.metadata.namespace)}/{pool.metadata.name}"
        )
        if not publishing.covers((body.get("status") or {}).get("endpoints"), entries):
            await self.kube.patch_status(path, {"endpoints": entries})
        self.metrics.attested.labels(pool.metadata.namespace, pool.metadata.name).set(admitted)
        if self.after_sweep is not None:
            await self.after_sweep(pool.metadata.namespace, pool.metadata.name)
        pending = admitted < len(endpoints)
        return SweepResult(len(targets), admitted, admit.interval(pool), pending)

    async def _attend(
        self,
        body: Obj,
        pool: MinerPool,
        target: Target,
        record: Record,
        readmit: str,
        judge: Judge,
        secrets: release.SecretSet,
        who: str,
    ) -> Attended:
        """Challenge the endpoint; if its evidence verified (and would be admitted), make sure
        its enclave has the pool's secrets."""
        outcome = await self._bounded(target, judge)
        if not isinstance(outcome, Verified) or chip_blocked(record, outcome, readmit):
            return Attended(outcome, None)
        holder = self.leases.claim(outcome.hpke_key, (_pool_key(pool), target.key), self.clock())
        if holder is not None:
            self.metrics.failed_checks.labels(outcome.tee, DUPLICATE_KEY_CHECK).inc()
            return Attended(Rejected(_duplicate(holder)), None)
        return await self.releaser.ensure(body, pool, target, outcome, record, secrets, who)

    def _recover_external(self, body: Obj, pool: MinerPool) -> None:
        """After a restart: take back the external leases this operator had signed."""
        key = _pool_key(pool)
        if self.leases.recovered(key):
            return
        entries = [
            e for e in (body.get("status") or {}).get("endpoints") or [] if isinstance(e, dict)
        ]
        declared = {e.name: e.url.rstrip("/") for e in pool.spec.endpoints or []}

        def exists(record: Any) -> str | None:
            ok = declared.get(record.endpoint) == record.url
            return f"{pool.metadata.uid}/{record.endpoint}" if ok else None

        tokens = [e.get("admissionRecord") for e in entries if e.get("admissionRecord")]
        self.leases.recover(key, tokens, self.clock(), exists)

    def _judge(self, pool: MinerPool) -> Judge:
        return Judge(
            policy=admit.pool_policy(pool, self.trust.allow_simulated),
            trust=self.trust.current(),
            require_gpu=pool.spec.tee.gpu.required,
            pool=f"{pool.metadata.namespace}/{pool.metadata.name}",
            gateway_keys=self.gateway_keys,
        )

    async def _bounded(self, target: Target, judge: Judge) -> Outcome:
        """One challenge in a slot, within an overall deadline: httpx's timeout is per read,
        so a peer dribbling a byte at a time would otherwise hold the slot for hours."""
        async with self._slots:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self._deadline_s):
                    outcome: Outcome = await challenge(
                        self._http, target, judge, self.book, self.metrics, self.clock
                    )
            except TimeoutError:
                outcome = Unreachable(f"no complete answer within {self._deadline_s:g} s")
            self.metrics.challenge_seconds.observe(time.perf_counter() - started)
        return outcome

    async def publish(self, body: Obj, pool: MinerPool, pods: list[Obj]) -> int:
        """Write the pool's EndpointSlice from the pods' records, as of now."""
        count = await endpointslice.publish(self.kube, pool, pods, self.clock(), self.leases)
        self.metrics.attested.labels(pool.metadata.namespace, pool.metadata.name).set(count)
        return count

    def _pod_record(self, pool: MinerPool, pod: Obj) -> Record:
        target = _pod_target(pod)
        return self.leases.record(_pool_key(pool), target.key, target.url)

    async def _record(
        self, body: Obj, pool: MinerPool, pod: Obj, attended: Attended, readmit: dict[str, str]
    ) -> Obj:
        """Keep the pod's next record in the book, and show it on the pod's annotations (for
        people: nothing reads them back)."""
        meta = pod["metadata"]
        annotations = meta.get("annotations") or {}
        target = _pod_target(pod)
        after = self._transition(
            body,
            pool,
            self._pod_record(pool, pod),
            attended,
            readmit.get(meta["name"], ""),
            f"pod {meta['name']}",
        )
        shown = self._renew(pool, target.key, Lease(after, meta["name"], target.url, target.key))
        patch = shown.record.to_annotations()
        if all(annotations.get(k) == v for k, v in patch.items()):
            return pod
        try:
            await self.kube.merge_patch_only(
                f"{paths.collection('v1', 'Pod', meta['namespace'])}/{meta['name']}",
                {"metadata": {"annotations": patch}},
            )
        except ApiError as exc:
            if not exc.not_found:
                raise
            # The pod went away meanwhile: leave it out of this sweep's slice.
            return {**pod, "metadata": {**meta, "deletionTimestamp": "gone"}}
        written = {k: v for k, v in {**annotations, **patch}.items() if v is not None}
        return {**pod, "metadata": {**meta, "annotations": written}}

    def _renew(self, pool: MinerPool, key: str, lease: Lease) -> Lease:
        """Keep the lease; return what to publish of it (publishing.py: only what must be)."""
        refresh = publishing.horizon(admit.interval(pool), self._deadline_s)
        return self.leases.renew(_pool_key(pool), key, lease, self.clock(), refresh)

    def _transition(
        self,
        body: Obj,
        pool: MinerPool,
        record: Record,
        attended: Attended,
        readmit: str,
        who: str,
    ) -> Record:
        """The endpoint's next record; counts the outcome and posts an Event if its standing
        changed."""
        outcome = attended.outcome
        transition = next_record(
            record, outcome, now=self.clock(), max_age=admit.max_age(pool), readmit_chip=readmit
        )
        self._count(pool, outcome, transition)
        if transition.event:
            type_, reason, message = transition.event
            self.emit(body, type_, reason, f"{who}: {message}")
        if attended.released is None:
            return transition.record
        return replace(transition.record, secrets_released=attended.released)

    def _count(self, pool: MinerPool, outcome: Outcome, transition: Transition) -> None:
        kind = (
            "unreachable"
            if isinstance(outcome, Unreachable)
            else "rejected"
            if isinstance(outcome, Rejected)
            else "release_failed"
            if isinstance(outcome, ReleaseFailed)
            else "verified"
        )
        labels = (pool.metadata.namespace, pool.metadata.name)
        self.metrics.challenges.labels(*labels, kind).inc()
        if transition.event and transition.event[1] == "ChipChanged":
            self.metrics.chip_changes.labels(*labels).inc()


async def _pause(stopped: Any, woken: asyncio.Event | None, seconds: float) -> None:
    """Until `stopped` (its own `wait`), `woken` (if given) or `seconds` passed."""
    if woken is None:
        await stopped.wait(seconds)
        return
    waits = {asyncio.ensure_future(stopped.wait(seconds)), asyncio.ensure_future(woken.wait())}
    _, undone = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in undone:
        task.cancel()
    await asyncio.gather(*undone, return_exceptions=True)


def _pool_key(pool: MinerPool) -> tuple[str, str]:
    return (pool.metadata.namespace, pool.metadata.name)


def _duplicate(holder: tuple[tuple[str, str], str]) -> str:
    (namespace, name), _ = holder
    return (
        f"{DUPLICATE_KEY_CHECK}: this enclave key already holds a lease in pool "
        f"{namespace}/{name} (one enclave serves one endpoint of one pool)"
    )


def _pod_target(pod: Obj) -> Target:
    return Target(
        key=pod["metadata"]["uid"],
        url=f"http://{pod['status']['podIP']}:{builders.AGENT_PORT}",
    )
