"""Operator restarts during churn, shared by the CI test (tests/operator/test_restarts.py, a few
restarts) and the benchmark (e2e/bench/operatorchurn.py, 50): a seeded driver scales, edits
and deletes (and re-creates) MinerPools while the operator is killed (SIGKILL) or stopped
(SIGTERM) at random moments, then `problems` lists every way the namespace differs from
converged: a pool whose status or children disagree with its spec, an object labelled with a
pool that has no live owner (orphan), more pods, Deployments, Services or slice entries than
the spec asks for (duplicates), an admission record for a pod that is gone."""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from teeroute import admission, admission_record
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import ApiError, KubeRest
from teeroute_sandbox.testing import runner_ready, wait_for

from .conftest import OperatorProcess
from .test_attestation import API, attested_pool, free_port

Obj = dict[str, Any]
POOL_LABEL = "teeroute.dev/pool"
MODELS = ("meta-llama/Llama-3.1-8B-Instruct", "qwen/Qwen2.5-7B-Instruct")
"""An edit of the served model rolls the pods out (the engine's arguments change); both run
on the images the sandbox has."""
PRICES = ("0.10", "0.12", "0.15")
OWNED_BY_POOL = (
    ("apis/apps/v1", "deployments"),
    ("api/v1", "services"),
    ("apis/policy/v1", "poddisruptionbudgets"),
    ("apis/networking.k8s.io/v1", "networkpolicies"),
)
"""Children whose owner is the MinerPool itself; at most one of each per pool."""
GRACE_S = 10
"""What the chart's pod gets between SIGTERM and SIGKILL (terminationGracePeriodSeconds)."""
NEVER_OURS = (("api/v1", "secrets"), ("api/v1", "configmaps"))
"""The operator makes none of these: one labelled with a pool is an orphan by definition."""


@dataclass
class Churn:
    """The driver: what it did, by kind of action and by signal."""

    kube: KubeRest
    namespace: str
    rng: random.Random
    names: tuple[str, ...]
    max_replicas: int = 2
    actions: Counter[str] = field(default_factory=Counter)
    signals: Counter[str] = field(default_factory=Counter)
    unclean: list[int | None] = field(default_factory=list)
    """Exit codes of SIGTERMs that did not end in exit 0 within GRACE_S (None: killed)."""

    def create_all(self) -> None:
        for name in self.names:
            self.kube.post(f"{API}/{self.namespace}/minerpools", self._body(name))

    def step(self) -> None:
        """One random action on one random pool."""
        name = self.rng.choice(self.names)
        current = self.kube.get_or_none(f"{API}/{self.namespace}/minerpools/{name}")
        if current is None:
            self._do("create", lambda: self._create(name))
            return
        if current["metadata"].get("deletionTimestamp"):
            self.actions["skipped (terminating)"] += 1
            return
        action = self.rng.choices(("scale", "edit-model", "edit-price", "delete"), (4, 2, 2, 1))[0]
        path = f"{API}/{self.namespace}/minerpools/{name}"
        changes: dict[str, Callable[[], Any]] = {
            "scale": lambda: self.kube.patch(
                path, {"spec": {"replicas": self.rng.randint(0, self.max_replicas)}}
            ),
            "edit-model": lambda: self.kube.patch(
                path, {"spec": {"models": [{"name": self.rng.choice(MODELS)}]}}
            ),
            "edit-price": lambda: self.kube.patch(
                path, {"spec": {"pricing": {"inputPerMillion": self.rng.choice(PRICES)}}}
            ),
            "delete": lambda: self.kube.delete(path),
        }
        self._do(action, changes[action])

    def restart(self, operator: OperatorProcess, kill: bool) -> None:
        """Kill (SIGKILL) or stop (SIGTERM) the operator, at once start a new one and wait
        until it is up (so that the next restart interrupts real work, not its imports)."""
        if kill:
            self.signals["SIGKILL"] += 1
            operator.kill()
        else:
            self.signals["SIGTERM"] += 1
            assert operator.proc is not None
            operator.proc.send_signal(signal.SIGTERM)
            try:
                code = operator.proc.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                operator.kill()
                code = None
            if code != 0:
                self.unclean.append(code)
        operator.start()
        wait_up(operator)

    def run(self, operator: OperatorProcess, restarts: int, max_gap_s: float = 3.0) -> None:
        """`restarts` rounds of 1-3 actions, a random pause, a restart; `operator` is up
        (see `wait_up`) and has a liveness port (`probed_operator`). Half the restarts (one
        more when odd) are SIGKILLs, in a random order."""
        kills = [i < (restarts + 1) // 2 for i in range(restarts)]
        self.rng.shuffle(kills)
        for kill in kills:
            for _ in range(self.rng.randint(1, 3)):
                self.step()
                time.sleep(self.rng.uniform(0.0, 0.5))
            time.sleep(self.rng.uniform(0.1, max_gap_s))
            self.restart(operator, kill)

    def _create(self, name: str) -> None:
        self.kube.post(f"{API}/{self.namespace}/minerpools", self._body(name))

    def _body(self, name: str) -> Obj:
        body = attested_pool(name, self.rng.randint(0, self.max_replicas))
        body["spec"]["models"] = [{"name": self.rng.choice(MODELS)}]
        return body

    def _do(self, action: str, change: Callable[[], Any]) -> None:
        try:
            change()
        except ApiError as exc:  # e.g. re-created while the old one still terminates
            self.actions[f"{action} refused ({exc.status})"] += 1
            return
        self.actions[action] += 1


def probed_operator(sandbox: Sandbox, log: Path) -> OperatorProcess:
    """An operator whose liveness endpoint (served once its startup is done) says it is up."""
    return OperatorProcess(sandbox, log, TEEROUTE_OPERATOR_LIVENESS_PORT=str(free_port()))


def wait_up(operator: OperatorProcess, timeout_s: float = 60.0) -> None:
    port = operator.settings["TEEROUTE_OPERATOR_LIVENESS_PORT"]

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(answers, timeout_s=timeout_s, interval_s=0.1, what="the operator to be up")


def problems(kube: KubeRest, ns: str, operator_key: bytes) -> list[str]:
    """Everything that differs from converged (empty: converged)."""
    pools = {p["metadata"]["name"]: p for p in kube.get(f"{API}/{ns}/minerpools")["items"]}
    found: list[str] = [f"{n}: still terminating" for n, p in pools.items() if _terminating(p)]
    live = {n: p for n, p in pools.items() if not _terminating(p)}
    uids = {p["metadata"]["uid"]: n for n, p in live.items()}
    found += _orphans(kube, ns, uids)
    for name, pool in sorted(live.items()):
        found += [f"{name}: {p}" for p in _pool_problems(kube, ns, pool, operator_key)]
    return found


def _orphans(kube: KubeRest, ns: str, pool_uids: dict[str, str]) -> list[str]:
    """Objects labelled with a pool whose owner chain does not end at that live pool."""
    found: list[str] = []
    owners = dict(pool_uids)  # uid -> the pool it belongs to, down the chain
    for prefix, plural in (*OWNED_BY_POOL, ("apis/apps/v1", "replicasets"), ("api/v1", "pods")):
        for obj in _labelled(kube, prefix, ns, plural):
            owner = owners.get(_controller_uid(obj))
            if owner is None or owner != _labels(obj).get(POOL_LABEL):
                found.append(f"orphan {plural[:-1]} {obj['metadata']['name']}")
            elif plural in ("deployments", "services", "replicasets"):
                owners[obj["metadata"]["uid"]] = owner
    for obj in _labelled(kube, "apis/discovery.k8s.io/v1", ns, "endpointslices"):
        # The attested slices are the operator's; the others the Service's (kube's controller
        # copies the Service's labels onto them).
        owner = owners.get(_controller_uid(obj))
        if owner is None or owner != _labels(obj).get(POOL_LABEL):
            found.append(f"orphan endpointslice {obj['metadata']['name']}")
    for prefix, plural in NEVER_OURS:
        found += [
            f"orphan {plural[:-1]} {o['metadata']['name']}"
            for o in _labelled(kube, prefix, ns, plural)
        ]
    return found


def _pool_problems(kube: KubeRest, ns: str, pool: Obj, operator_key: bytes) -> list[str]:
    name, spec, status = pool["metadata"]["name"], pool["spec"], pool.get("status") or {}
    want = int(spec["replicas"])
    found = []
    if status.get("observedGeneration") != pool["metadata"]["generation"]:
        found.append(f"status of generation {status.get('observedGeneration')}")
    counts = {k: status.get(k) for k in ("desiredReplicas", "replicas", "readyReplicas")}
    counts["attestedReplicas"] = status.get("attestedReplicas")
    if set(counts.values()) != {want}:
        found.append(f"status counts {counts}, spec wants {want}")
    if _condition(status, "Ready") != "True" or _condition(status, "Progressing") != "False":
        found.append("not Ready, or still Progressing")
    for prefix, plural in OWNED_BY_POOL:
        mine = _labelled(kube, prefix, ns, plural, name)
        if len(mine) > 1:
            found.append(f"{len(mine)} {plural}")
    deployment = kube.get_or_none(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    if deployment is None or deployment["spec"]["replicas"] != want:
        found.append("Deployment missing or not at the spec's replicas")
    pods = _labelled(kube, "api/v1", ns, "pods", name)
    model = spec["models"][0]["name"]
    running = [p for p in pods if runner_ready(p) and model in _engine_args(p)]
    if len(pods) != want or len(running) != want:
        found.append(f"{len(pods)} pods ({len(running)} serving {model}), spec wants {want}")
    found += _slice_problems(kube, ns, name, pods, operator_key)
    return found


def _slice_problems(
    kube: KubeRest, ns: str, name: str, pods: list[Obj], operator_key: bytes
) -> list[str]:
    """The pool's attested slices list each live pod once, with one valid record each."""
    slices = [
        s
        for s in _labelled(kube, "apis/discovery.k8s.io/v1", ns, "endpointslices", name)
        if _labels(s).get(admission.SLICE_MANAGED_BY_LABEL) == admission.MANAGED_BY
    ]
    now = dt.datetime.now(dt.UTC)
    addresses = Counter(e.address for s in slices for e in admission.admitted(s, now))
    records: Counter[str] = Counter()
    for slice_ in slices:
        notes = slice_["metadata"].get("annotations") or {}
        tokens = admission_record.load_list(notes.get(admission_record.RECORDS_ANNOTATION, ""))
        for record in admission_record.verify_all(
            tokens, operator_key, pool=f"{ns}/{name}", warn=lambda _: None
        ):
            if record.admitted(now):
                records[record.pod_uid] += 1
    want_ips = Counter((p.get("status") or {}).get("podIP") for p in pods)
    want_uids = Counter(p["metadata"]["uid"] for p in pods)
    found = []
    if addresses != want_ips:
        found.append(f"slices list {dict(addresses)}, pods are at {dict(want_ips)}")
    if records != want_uids:
        found.append(f"{sum(records.values())} admission records for {len(pods)} pods")
    return found


def _labelled(
    kube: KubeRest, prefix: str, ns: str, plural: str, pool: str | None = None
) -> list[Obj]:
    selector = f"{POOL_LABEL}={pool}" if pool else POOL_LABEL
    items: list[Obj] = kube.get(f"/{prefix}/namespaces/{ns}/{plural}", labelSelector=selector)[
        "items"
    ]
    return items


def _labels(obj: Obj) -> dict[str, str]:
    labels: dict[str, str] = obj["metadata"].get("labels") or {}
    return labels


def _controller_uid(obj: Obj) -> str:
    refs = obj["metadata"].get("ownerReferences") or []
    return next((str(r.get("uid")) for r in refs if r.get("controller")), "")


def _terminating(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _condition(status: Obj, type_: str) -> str | None:
    found = [c for c in status.get("conditions") or [] if c.get("type") == type_]
    return found[0].get("status") if found else None


def _engine_args(pod: Obj) -> list[str]:
    containers = pod["spec"].get("containers") or []
    return [str(a) for a in containers[1].get("args") or []] if len(containers) > 1 else []
