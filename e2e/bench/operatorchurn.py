"""Benchmark: operator restarts during churn, the long variant of tests/operator/test_restarts.py.

    python3 -m uv run --frozen python e2e/bench/operatorchurn.py [--restarts 50] [--pools 4]
        [--seed 20261205] [--sandbox teeroute-bench] [--out e2e/bench/results]

On the sandbox cluster (brought up if it is not; as root): the operator runs as a real process
while a seeded driver scales, edits (served model, price) and deletes/re-creates attested
MinerPools whose miner pods are real simulated-TEE agents, and the operator is killed
(SIGKILL) or stopped (SIGTERM; it must exit 0 within 10 s), half each in random order, at random
moments (0.1-3 s after 1-3 actions, each new process up before the next round). After the
last restart it waits for convergence and records how long that took and
everything that was still wrong (tests/operator/churn.py `problems`: status vs spec, orphans,
duplicates, admission records of gone pods). Writes operator-churn.json and operator-churn.md.
Not a test: the target ("converges, no orphans, no duplicates") is reported met or not.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the test harness (tests/operator) drives the operator

from tests.operator.churn import Churn, probed_operator, problems, wait_up  # noqa: E402
from tests.operator.conftest import vendor  # noqa: E402

from teeroute_sandbox import netns  # noqa: E402
from teeroute_sandbox.cluster import Sandbox  # noqa: E402
from teeroute_sandbox.restclient import ApiError, KubeRest  # noqa: E402
from teeroute_sandbox.settings import SandboxSettings  # noqa: E402

CONVERGE_TIMEOUT_S = 300.0


def main() -> None:
    args = _args()
    box = Sandbox(SandboxSettings(name=args.sandbox))
    was_up = box.status().healthy
    box.up()
    netns.enter(box.netns)
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    kube = KubeRest(box.kubeconfig)
    namespace = f"churn-{random.Random().randrange(16**6):06x}"  # noqa: S311 - a name
    try:
        doc = _run(args, box, kube, namespace)
    finally:
        with contextlib.suppress(ApiError):
            kube.delete(f"/api/v1/namespaces/{namespace}")
        kube.close()
        if not was_up:
            box.down()
    doc |= {
        "bench": "operator-churn",
        "date": started.isoformat(timespec="seconds"),
        "commit": _commit(),
        "command": "python3 -m uv run --frozen python e2e/bench/operatorchurn.py "
        + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "operator-churn.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "operator-churn.md").write_text(_markdown(doc))
    print(_markdown(doc))


def _run(args: argparse.Namespace, box: Sandbox, kube: KubeRest, namespace: str) -> dict[str, Any]:
    _crds(box)
    kube.post(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    vendor(box).install(kube, [namespace])
    log = Path(tempfile.mkdtemp(prefix="operatorchurn-")) / "operator.log"
    operator = probed_operator(box, log)
    operator.start()
    wait_up(operator)
    names = tuple(f"churn-{i}" for i in range(args.pools))
    churn = Churn(kube, namespace, random.Random(args.seed), names)  # noqa: S311 - seeded
    try:
        churn.create_all()
        began = time.monotonic()
        churn.run(operator, args.restarts)
        churn_s = time.monotonic() - began
        converge_s, left = _converge(kube, namespace, operator.release_public)
        final = _final(kube, namespace)
    finally:
        operator.stop()
    return {
        "config": {"restarts": args.restarts, "pools": args.pools, "seed": args.seed},
        "restarts": sum(churn.signals.values()),
        "signals": dict(churn.signals),
        "sigterm_unclean_exits": churn.unclean,
        "actions": dict(churn.actions),
        "churn_s": round(churn_s, 1),
        "converged": not left,
        "converge_s": round(converge_s, 1),
        "problems_left": left,
        "final": final,
        "operator_log": str(log),
    }


def _converge(kube: KubeRest, namespace: str, key: bytes) -> tuple[float, list[str]]:
    """Seconds from the last restart until nothing is wrong (or the timeout), and what is."""
    began = time.monotonic()
    left: list[str] = ["not checked"]
    while time.monotonic() - began < CONVERGE_TIMEOUT_S:
        with contextlib.suppress(ApiError, OSError):
            left = problems(kube, namespace, key)
        if not left:
            break
        time.sleep(1.0)
    return time.monotonic() - began, left


def _final(kube: KubeRest, namespace: str) -> dict[str, Any]:
    pools = kube.get(f"/apis/teeroute.dev/v1alpha1/namespaces/{namespace}/minerpools")["items"]
    pods = kube.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector="teeroute.dev/pool")
    return {
        "pools": {p["metadata"]["name"]: p["spec"]["replicas"] for p in pools},
        "pods": len(pods["items"]),
        "pods_by_pool": dict(
            Counter(p["metadata"]["labels"]["teeroute.dev/pool"] for p in pods["items"])
        ),
    }


def _crds(box: Sandbox) -> None:
    kubectl = [str(box.layout.root / "bin" / "kubectl"), f"--kubeconfig={box.kubeconfig}"]
    subprocess.run([*kubectl, "apply", "-f", str(ROOT / "crds")], check=True, capture_output=True)
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd/minerpools.teeroute.dev"],
        check=True,
        capture_output=True,
    )


def _commit() -> str:
    out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True)
    return out.stdout.decode().strip()


def _markdown(doc: dict[str, Any]) -> str:
    cfg, m = doc["config"], doc["machine"]
    met = doc["converged"] and doc["restarts"] >= 50 and not doc["sigterm_unclean_exits"]
    lines = [
        f"# Operator restarts during churn ({doc['date']})",
        "",
        f"`{doc['command']}` at commit {doc['commit']}; {m['cpus']} CPUs, Python {m['python']}, "
        f"load average {m['load_before']} before, {m['load_after']} after (a shared machine).",
        "",
        f"{cfg['pools']} attested MinerPools (0-2 replicas of real simulated-TEE agents, run by "
        f"the sandbox's runner), seed {cfg['seed']}. Between restarts the driver made 1-3 "
        "changes (scale, served model, price, delete or re-create), waited 0.1-3 s, then "
        "killed (SIGKILL) or stopped (SIGTERM, 10 s to exit) the operator, started a new one "
        "at once and waited until it was up (its liveness endpoint answers once kopf's "
        "startup is done), so every restart interrupts a running operator.",
        "",
        "| restarts | SIGKILL | SIGTERM | SIGTERM not exit 0 in 10 s | churn s | converged "
        "| converge s after last restart |",
        "|---|---|---|---|---|---|---|",
        f"| {doc['restarts']} | {doc['signals'].get('SIGKILL', 0)} | "
        f"{doc['signals'].get('SIGTERM', 0)} | {len(doc['sigterm_unclean_exits'])} | "
        f"{doc['churn_s']} | {'yes' if doc['converged'] else 'NO'} | {doc['converge_s']} |",
        "",
        "Convergence is timed from the moment the last new operator process was up (the "
        "startups and the waits for them are in the churn time); 0 s would mean it had "
        "already converged by then.",
        "",
        "Actions: " + ", ".join(f"{k} {v}" for k, v in sorted(doc["actions"].items())) + ".",
        "",
        f"Final state: pools {doc['final']['pools']} (spec replicas), "
        f"{doc['final']['pods']} pods {doc['final']['pods_by_pool']}.",
        "",
        "Checked after the last restart (tests/operator/churn.py): every pool's status at its "
        "generation with desired = replicas = ready = attested = spec; one Deployment, Service, "
        "PDB and NetworkPolicy at most per pool; pods = spec, all run by the runner and "
        "serving the spec's model; "
        "the attested slices list each pod once with one valid admission record; nothing "
        "labelled with a pool whose owner chain does not end at that live pool.",
        "",
        f"**Target (50 random restarts during churn: converge, no orphans, no duplicates): "
        f"{'met' if met else 'NOT met'}**"
        + ("" if doc["converged"] else f"; still wrong: {doc['problems_left'][:10]}")
        + ("" if doc["restarts"] >= 50 else f"; only {doc['restarts']} restarts were run")
        + (
            f"; SIGTERM exits not clean: {doc['sigterm_unclean_exits']}"
            if doc["sigterm_unclean_exits"]
            else ""
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=50)
    parser.add_argument("--pools", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--sandbox", default="teeroute-bench", help="sandbox instance name")
    parser.add_argument("--out", type=Path, default=ROOT / "e2e" / "bench" / "results")
    return parser.parse_args()


if __name__ == "__main__":
    main()
