"""Benchmark: the operator at scale on the sandbox (kwok nodes), with real simulated-TEE agents.

    python3 -m uv run python e2e/bench/operatorscale.py [--nodes 200] [--pools 500]
        [--in-cluster 2000] [--external 500] [--routes 200] [--window 240] [--quick 3]
        [--sandbox tr-scale] [--keep] [--out e2e/bench/results]

Brings up a sandbox (or reuses a running one), adds `--nodes` kwok nodes for the miners, and
runs the real operator process against it. MinerPools (in-cluster ones with 4-5 replicas, and
external ones with 5 endpoints each) and Routes are applied at once. Every miner pod is a kwok
pod (kwok runs nothing); its enclave agent is the real agent (teeroute_enclave.AgentServer:
its own keys, the simulated TEE with its node's chip, bound to its pool) served by the *fleet*
(`operatorscale.py fleet`, a second process started here), which watches the pods and serves
each pod's agent on the pod's IP, many agents in one process. External endpoints are agents
of the fleet on loopback addresses.

Measured (real numbers from the apiserver and /proc):
- convergence: time from applying all pools until every one has all its endpoints attested;
- apply -> traffic-ready for a small pool (2 replicas), `--quick` times, after convergence:
  until its slice carries 2 admission records that verify with the operator's key;
- steady-state apiserver writes per second over `--window` s: `apiserver_request_total`
  (verbs POST, PUT, PATCH, APPLY, DELETE) by resource; kwok's node heartbeats (nodes, leases)
  and the other controllers' writes are shown apart from the resources the operator writes;
- operator CPU (cores) over the window, per 1,000 endpoints at a 60 s interval; its RSS.

Not a test: nothing asserts a speed. Writes operator-scale.json and operator-scale.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import platform
import re
import resource
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
API = "/apis/teeroute.dev/v1alpha1"
FLEET_LABEL = "teeroute.dev/bench-fleet"
POOL_LABEL = "teeroute.dev/pool"
FLEET_CIDR = "10.246.0.0/16"
AGENT_PORT = 8443
INTERVAL = "60s"
MAX_AGE = "5m"
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE"}
OPERATOR_RESOURCES = {
    "pods",
    "endpointslices",
    "minerpools",
    "routes",
    "deployments",
    "services",
    "poddisruptionbudgets",
    "networkpolicies",
    "events",
}
"""Resources the operator writes (others write some of them too: an upper bound for it)."""
Obj = dict[str, Any]


# -- the fleet: many real agents in one process --------------------------------------------


class Fleet:
    """Many real enclave agents in one process, one per address, served by one selector."""

    def __init__(self, spec: Obj) -> None:
        from teeroute.attestation.providers import code_measurement
        from teeroute_enclave.__main__ import PACKAGE

        self.chips = Path(spec["chips"])
        self.measurement = code_measurement(PACKAGE)
        self.release = base64.b64decode(spec["release_key"])
        self.gateway = (base64.b64decode(spec["gateway_key"]),)
        self.providers: dict[str, Any] = {}
        self.selector = selectors.DefaultSelector()
        self.servers: dict[str, Any] = {}
        self.lock = threading.Lock()

    def serve(self, address: str, node: str, pool: str) -> None:
        from teeroute.attestation.providers import SimulatedProvider
        from teeroute_enclave.gateway_auth import Callers
        from teeroute_enclave.keys import EnclaveKeys
        from teeroute_enclave.server import AgentServer

        if node not in self.providers:
            self.providers[node] = SimulatedProvider(self.chips, node, self.measurement)
        keys = EnclaveKeys.generate(
            release_public=self.release, pool=pool, gateway_keys=self.gateway
        )
        server = AgentServer(
            (address, AGENT_PORT),
            self.providers[node],
            keys,
            callers=Callers(keys.gateway_keys, 60),
        )
        server.socket.setblocking(False)
        with self.lock:
            self.servers[address] = server
            self.selector.register(server.socket, selectors.EVENT_READ, server)

    def stop(self, address: str) -> None:
        with self.lock:
            server = self.servers.pop(address, None)
            if server is not None:
                self.selector.unregister(server.socket)
                server.server_close()

    def loop(self) -> None:
        while True:
            with self.lock:
                ready = self.selector.select(timeout=0.05) if self.servers else []
            if not ready:
                time.sleep(0.01)
            for key, _ in ready:
                with contextlib.suppress(OSError):
                    key.data._handle_request_noblock()  # accept, then a thread per request

    def report(self, path: Path) -> None:
        """How many agents answer, written every second (the bench shows it next to the
        pods kwok calls Ready: a Ready pod whose agent is not up yet fails its challenge)."""
        while True:
            path.write_text(str(len(self.servers)))
            time.sleep(1)

    async def follow_pods(self, kubeconfig: Path) -> None:
        """An agent for every bench pod with an IP, gone with its pod."""
        from teeroute.kube import Kube, load_config, paths

        kube = Kube(load_config(kubeconfig))
        path = paths.collection("v1", "Pod", None)
        async for kind, pod in kube.watch(path, label_selector=POOL_LABEL, timeout_s=300):
            meta, status = pod.get("metadata") or {}, pod.get("status") or {}
            if not str(meta.get("namespace", "")).startswith("bench-ops-"):
                continue
            ip, node = status.get("podIP"), (pod.get("spec") or {}).get("nodeName")
            if kind == "DELETED" or meta.get("deletionTimestamp"):
                if ip:
                    self.stop(ip)
            elif ip and node and ip not in self.servers:
                self.serve(ip, node, f"{meta['namespace']}/{meta['labels'][POOL_LABEL]}")


def fleet_main(spec_file: Path) -> None:
    spec = json.loads(spec_file.read_text())
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fleet = Fleet(spec)
    threading.Thread(target=fleet.loop, daemon=True).start()
    threading.Thread(target=fleet.report, args=(Path(spec["count_file"]),), daemon=True).start()
    for endpoint in spec["external"]:
        fleet.serve(endpoint["address"], endpoint["node"], endpoint["pool"])
    print(f"fleet: {len(fleet.servers)} external agents; following pods", flush=True)
    asyncio.run(fleet.follow_pods(Path(spec["kubeconfig"])))


# -- the cluster side ----------------------------------------------------------------------


def fleet_nodes(count: int, version: str) -> list[Obj]:
    from teeroute_sandbox import nodepools

    pool = nodepools.NodePool(
        name="bench-fleet",
        node_names=tuple(f"bench-fleet-{i:03d}" for i in range(count)),
        labels={
            **nodepools.KIND_SIMULATED.labels,
            FLEET_LABEL: "true",
        },
        taints=(),
        capacity={"cpu": "64", "memory": "256Gi", "pods": "110"},
        allocatable={"cpu": "64", "memory": "256Gi", "pods": "110"},
        provider_id="kind://docker/bench/{node}",
        internal_ip_base="172.30.0.10",
        os_image="Debian GNU/Linux 12 (bookworm)",
    )
    cidrs = ipaddress.ip_network(FLEET_CIDR).subnets(new_prefix=24)
    return [
        nodepools.node_manifest(pool, i, name, str(next(cidrs)), version)
        for i, name in enumerate(pool.node_names)
    ]


def issue_chips(vendor_dir: Path, nodes: list[str], into: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from teeroute.attestation import simulated

    root = x509.load_pem_x509_certificate((vendor_dir / "root.crt").read_bytes())
    root_key: Any = serialization.load_pem_private_key(
        (vendor_dir / "root.key").read_bytes(), password=None
    )
    now = dt.datetime.now(dt.UTC)
    into.mkdir(parents=True, exist_ok=True)
    for node in nodes:
        chip, key = simulated.issue_chip(root, root_key, node, now)
        (into / f"{node}.crt").write_bytes(chip.public_bytes(serialization.Encoding.PEM))
        (into / f"{node}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def in_cluster_pool(name: str, replicas: int, measurement: str) -> Obj:
    return {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "MinerPool",
        "metadata": {"name": name},
        "spec": {
            "models": [{"name": f"bench/{name}"}],
            "tee": {"type": "simulated"},
            "placement": {"profile": "kind", "nodeSelector": {FLEET_LABEL: "true"}},
            "replicas": replicas,
            "images": {"agent": "bench.invalid/agent:0", "engine": "bench.invalid/engine:0"},
            "resources": {"cpu": "10m", "memory": "16Mi"},
            "pricing": {"inputPerMillion": "0.10", "outputPerMillion": "0.20"},
            "attestation": {
                "allowedMeasurements": [measurement],
                "maxEvidenceAge": MAX_AGE,
                "reattestationInterval": INTERVAL,
            },
        },
    }


def external_pool(name: str, urls: list[str], measurement: str) -> Obj:
    body = in_cluster_pool(name, 1, measurement)
    for key in ("replicas", "images", "placement", "resources"):
        del body["spec"][key]
    body["spec"]["endpoints"] = [{"name": f"e{i}", "url": u} for i, u in enumerate(urls)]
    return body


def route(name: str, pools: list[str]) -> Obj:
    return {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": name},
        "spec": {
            "model": f"bench/{pools[0]}",
            "backends": [{"pool": p} for p in pools],
            "constraints": {"allowedTee": ["simulated"]},
        },
    }


def plan(args: argparse.Namespace) -> tuple[list[tuple[str, Obj]], list[Obj], list[Obj]]:
    """(namespace, pool) to apply, the external agents to serve, the routes to apply."""
    from teeroute.attestation.providers import code_measurement
    from teeroute_enclave.__main__ import PACKAGE

    measurement = code_measurement(PACKAGE).hex()
    ext_pools = max(1, args.external // 5) if args.external else 0
    in_pools = max(1, args.pools - ext_pools)
    pools: list[tuple[str, Obj]] = []
    for i in range(in_pools):
        replicas = args.in_cluster // in_pools + (1 if i < args.in_cluster % in_pools else 0)
        pools.append((namespace_of(i), in_cluster_pool(f"ic-{i:04d}", replicas, measurement)))
    agents: list[Obj] = []
    for j in range(ext_pools):
        ns, name, urls = namespace_of(j), f"ex-{j:04d}", []
        for k in range(5):
            address = str(ipaddress.ip_address("127.2.0.1") + j * 5 + k)
            agents.append({"address": address, "node": "bench-fleet-000", "pool": f"{ns}/{name}"})
            urls.append(f"http://{address}:{AGENT_PORT}")
        pools.append((ns, external_pool(name, urls, measurement)))
    routes = [
        {"ns": ns, "body": route(f"r-{i:04d}", [body["metadata"]["name"]])}
        for i, (ns, body) in enumerate(pools[: args.routes])
    ]
    return pools, agents, routes


def namespace_of(i: int) -> str:
    return f"bench-ops-{i % 10}"


def write_counts(text: str) -> dict[str, float]:
    """apiserver_request_total of write verbs, by resource, from /metrics."""
    return request_counts(text, WRITE_VERBS, by_verb=False)


def request_counts(
    text: str, verbs: set[str] | None = None, *, by_verb: bool = True
) -> dict[str, float]:
    """apiserver_request_total by "VERB resource[/subresource]" (or by resource alone), of
    `verbs` (None: every verb but WATCH, whose count is of connections), from /metrics."""
    counts: dict[str, float] = {}
    pattern = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$")
    for line in text.splitlines():
        found = pattern.match(line)
        if not found:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
        verb = labels.get("verb", "")
        if (verbs is not None and verb not in verbs) or (verbs is None and verb == "WATCH"):
            continue
        key = labels.get("resource", "") + (
            f"/{labels['subresource']}" if labels.get("subresource") else ""
        )
        if by_verb:
            key = f"{verb} {key}"
        counts[key] = counts.get(key, 0.0) + float(found.group(2))
    return counts


def counted_between(before: dict[str, float], after: dict[str, float], top: int) -> dict[str, int]:
    """The `top` largest increases from `before` to `after`, largest first."""
    grown = {k: int(after[k] - before.get(k, 0)) for k in after}
    ranked = sorted((v, k) for k, v in grown.items() if v > 0)[::-1][:top]
    return {k: v for v, k in ranked}


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss / 1024, peak / 1024


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from teeroute_sandbox.cluster import Sandbox
        from teeroute_sandbox.settings import SandboxSettings

        self.args = args
        self.box = Sandbox(SandboxSettings(name=args.sandbox))
        self.tmp = Path(tempfile.mkdtemp(prefix="operatorscale-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.result: Obj = {}

    def say(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def run(self) -> Obj:
        from teeroute_sandbox import netns
        from teeroute_sandbox.restclient import KubeRest

        was_up = self.box.status().healthy
        self.box.up()
        netns.enter(self.box.netns)
        subprocess.run(["ip", "route", "replace", "local", FLEET_CIDR, "dev", "lo"], check=True)
        self.kube = KubeRest(self.box.kubeconfig, timeout_s=60)
        try:
            self._setup()
            self._measure()
        finally:
            for proc in reversed(self.procs):
                proc.send_signal(signal.SIGTERM)
            for proc in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(15)
                if proc.poll() is None:
                    proc.kill()
            if not was_up and not self.args.keep:
                self.box.down()
            elif was_up:
                self._clean()  # a shared sandbox: leave no fleet nodes or bench objects
        return self.result

    def _clean(self) -> None:
        for i in range(10):
            with contextlib.suppress(Exception):
                self.kube.delete(f"/api/v1/namespaces/{namespace_of(i)}")
        for node in self.kube.get("/api/v1/nodes", labelSelector=FLEET_LABEL)["items"]:
            with contextlib.suppress(Exception):
                self.kube.delete(f"/api/v1/nodes/{node['metadata']['name']}")

    def _setup(self) -> None:
        from teeroute_operator import release_key
        from teeroute_sandbox.simtee import SimulatedVendor

        kubectl = self.box.layout.root / "bin" / "kubectl"
        subprocess.run(
            [
                str(kubectl),
                f"--kubeconfig={self.box.kubeconfig}",
                "apply",
                "-f",
                str(ROOT / "crds"),
            ],
            check=True,
            capture_output=True,
        )
        version = self.kube.get("/version")["gitVersion"]
        nodes = fleet_nodes(self.args.nodes, version)
        existing = {n["metadata"]["name"] for n in self.kube.get("/api/v1/nodes")["items"]}
        for node in nodes:
            if node["metadata"]["name"] not in existing:
                self.kube.post("/api/v1/nodes", node)
        self.say(f"{len(nodes)} fleet nodes")
        vendor = SimulatedVendor(self.box.layout.root / "simulated-tee")
        vendor.root_pem()
        issue_chips(vendor.dir, [n["metadata"]["name"] for n in nodes], self.tmp / "chips")
        for i in range(10):
            ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace_of(i)}}
            with contextlib.suppress(Exception):
                self.kube.post("/api/v1/namespaces", ns)
        key_file = self.tmp / "release-key.pem"
        release_key.create(key_file)
        self.release = release_key.load(key_file)
        self.pools, agents, self.routes = plan(self.args)
        gateway_key = base64.b64encode(os.urandom(32)).decode()
        self._start_operator(vendor.trust_dir, key_file, gateway_key)
        spec = {
            "chips": str(self.tmp / "chips"),
            "kubeconfig": str(self.box.kubeconfig),
            "release_key": base64.b64encode(self.release.public).decode(),
            "gateway_key": gateway_key,
            "external": agents,
            "count_file": str(self.tmp / "fleet.count"),
        }
        (self.tmp / "fleet.json").write_text(json.dumps(spec))
        self._spawn("fleet", [sys.executable, __file__, "fleet", str(self.tmp / "fleet.json")])

    def _start_operator(self, trust_dir: Path, key_file: Path, gateway_key: str) -> None:
        env = {
            "KUBECONFIG": str(self.box.kubeconfig),
            "TEEROUTE_OPERATOR_LIVENESS_PORT": "0",
            "TEEROUTE_OPERATOR_METRICS_PORT": "0",
            "TEEROUTE_OPERATOR_TRUST_DIR": str(trust_dir),
            "TEEROUTE_OPERATOR_ALLOW_SIMULATED_TEE": "true",
            "TEEROUTE_OPERATOR_RELEASE_KEY_FILE": str(key_file),
            "TEEROUTE_OPERATOR_EXTERNAL_SCHEMES": "https,http",
            "TEEROUTE_OPERATOR_EXTERNAL_ALLOW_LOOPBACK": "true",
            "TEEROUTE_OPERATOR_GATEWAY_KEYS": gateway_key,
            "TEEROUTE_OPERATOR_RESYNC_SECONDS": str(self.args.resync),
        }
        profile = (
            ["-m", "cProfile", "-o", str(self.tmp / "operator.prof")] if self.args.profile else []
        )
        argv = [sys.executable, *profile, "-m", "teeroute_operator"]
        self.operator = self._spawn("operator", argv, env)

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=log, stderr=log)
        self.procs.append(proc)
        self.say(f"{name} started (pid {proc.pid}, log {self.tmp / f'{name}.log'})")
        return proc

    def metrics(self) -> dict[str, float]:
        return write_counts(self._metrics_text())

    def requests(self) -> dict[str, float]:
        return request_counts(self._metrics_text())

    def _metrics_text(self) -> str:
        response = self.kube._http.get("/metrics")  # text, not JSON: the client's own session
        response.raise_for_status()
        return response.text

    def converged(self) -> tuple[int, int]:
        """(pools with every endpoint attested, endpoints attested)."""
        items = self.kube.get(f"{API}/minerpools")["items"]
        done, attested = 0, 0
        for pool in items:
            if not pool["metadata"]["namespace"].startswith("bench-ops-"):
                continue
            status = pool.get("status") or {}
            want = status.get("desiredReplicas") or 0
            got = status.get("attestedReplicas") or 0
            attested += got
            done += int(want > 0 and got >= want)
        return done, attested

    def agents_answering(self) -> int:
        """Agents the fleet serves (external ones included), as it last wrote."""
        try:
            return int((self.tmp / "fleet.count").read_text() or 0)
        except (OSError, ValueError):
            return 0

    def pods_ready(self) -> int:
        """Bench miner pods that kwok reports Running and Ready (what the operator waits for)."""
        pods = self.kube.get("/api/v1/pods", labelSelector=POOL_LABEL)["items"]
        return sum(
            1
            for p in pods
            if p["metadata"]["namespace"].startswith("bench-ops-")
            and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        )

    def _measure(self) -> None:
        args, total = self.args, len(self.pools)
        endpoints = sum(
            len(b["spec"]["endpoints"]) if "endpoints" in b["spec"] else b["spec"]["replicas"]
            for _, b in self.pools
        )
        time.sleep(3)  # the operator's start-up (kopf's first lists)
        requests0, cpu0 = self.requests(), proc_cpu_s(self.operator.pid)
        started = time.monotonic()
        for ns, body in self.pools:
            self.kube.post(f"{API}/namespaces/{ns}/minerpools", body)
        applied_s = time.monotonic() - started
        for entry in self.routes:
            self.kube.post(f"{API}/namespaces/{entry['ns']}/routes", entry["body"])
        self.say(f"{total} pools applied in {applied_s:.1f} s, {len(self.routes)} routes")
        progress: list[tuple[float, int, int]] = []
        deadline = started + args.converge_timeout
        ready, pods_total = 0, sum(b["spec"].get("replicas", 0) for _, b in self.pools)
        agents_outside = [e for _, b in self.pools for e in b["spec"].get("endpoints", [])]
        rss_mb: list[tuple[float, int]] = []
        while time.monotonic() < deadline:
            done, attested = self.converged()
            if ready < pods_total and len(progress) % 5 == 0:
                # every 5th round: listing every pod costs the apiserver (and so the
                # operator, on the same 2 cores) ~12 MB of JSON at full size
                ready = self.pods_ready()
            answering = self.agents_answering() - len(agents_outside)
            progress.append(
                (round(time.monotonic() - started, 1), done, attested, ready, answering)
            )
            rss_mb.append((progress[-1][0], round(proc_rss_mb(self.operator.pid)[0])))
            if done == total:
                break
            self.say(
                f"converging: {done}/{total} pools, {attested}/{endpoints} endpoints, "
                f"{ready} pods ready"
            )
            time.sleep(2)
        converge_s = time.monotonic() - started if progress[-1][1] == total else None
        requests1, cpu1 = self.requests(), proc_cpu_s(self.operator.pid)
        pods_ready_s = next((p[0] for p in progress if p[3] >= pods_total), None)
        agents_s = next((p[0] for p in progress if p[4] >= pods_total), None)
        self.result["convergence"] = {
            "pools": total,
            "endpoints": endpoints,
            "apply_s": round(applied_s, 1),
            "converged_s": round(converge_s, 1) if converge_s else None,
            # when the cluster had every miner pod Ready (polled every ~10 s), and how long
            # the operator took after that: the part of the convergence that is its own
            "pods_ready_s": pods_ready_s,
            "after_pods_ready_s": (
                round(converge_s - pods_ready_s, 1) if converge_s and pods_ready_s else None
            ),
            # when the fleet had an agent answering on every pod's IP (kwok calls a pod Ready
            # at once; in a real pod the agent's readiness probe would have to pass first)
            "agents_answering_s": agents_s,
            "after_agents_answering_s": (
                round(converge_s - agents_s, 1) if converge_s and agents_s else None
            ),
            "progress": progress[:: max(1, len(progress) // 40)] + progress[-1:],
            "operator_rss_mb": rss_mb[:: max(1, len(rss_mb) // 40)] + rss_mb[-1:],
            # from the first apply to the end of converging: the operator's CPU, and the
            # apiserver's requests by verb and resource (everyone's: the controllers' too,
            # though their reads are mostly watches), the largest first
            "operator_cpu_s": round(cpu1 - cpu0, 1),
            "requests": counted_between(requests0, requests1, 16),
        }
        self.say(f"converged in {converge_s} s" if converge_s else "did not converge in time")
        self._steady(endpoints)
        self._quick()
        rss, peak = proc_rss_mb(self.operator.pid)
        self.result["operator_rss_mb"] = {"now": round(rss, 1), "peak": round(peak, 1)}

    def _steady(self, endpoints: int) -> None:
        time.sleep(self.args.settle)
        before, cpu0, t0 = self.metrics(), proc_cpu_s(self.operator.pid), time.monotonic()
        self.say(f"steady state: measuring for {self.args.window} s")
        time.sleep(self.args.window)
        after, cpu1, t1 = self.metrics(), proc_cpu_s(self.operator.pid), time.monotonic()
        window = t1 - t0
        rates = {
            k: round((after.get(k, 0) - before.get(k, 0)) / window, 3)
            for k in sorted(set(after) | set(before))
            if after.get(k, 0) != before.get(k, 0)
        }
        ours = sum(v for k, v in rates.items() if k.split("/")[0] in OPERATOR_RESOURCES)
        cores = (cpu1 - cpu0) / window
        self.result["steady"] = {
            "window_s": round(window, 1),
            "attested_endpoints": self.converged()[1],
            "writes_per_s_by_resource": rates,
            "operator_resources_writes_per_s": round(ours, 3),
            "all_writes_per_s": round(sum(rates.values()), 3),
            "operator_resources_writes_per_s_per_100_endpoints": round(ours * 100 / endpoints, 3),
            "operator_cpu_cores": round(cores, 4),
            "operator_cpu_cores_per_1000_endpoints": round(cores * 1000 / endpoints, 4),
        }

    def _quick(self) -> None:
        from teeroute import admission, admission_record

        times = []
        measurement = self.pools[0][1]["spec"]["attestation"]["allowedMeasurements"][0]
        for i in range(self.args.quick):
            ns, name = "bench-ops-0", f"quick-{i}"
            started = time.monotonic()
            self.kube.post(
                f"{API}/namespaces/{ns}/minerpools", in_cluster_pool(name, 2, measurement)
            )
            slices = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
            path = f"{slices}/{admission.slice_name(name)}"

            def ready(path: str = path, pool: str = f"{ns}/{name}") -> bool:
                found = self.kube.get_or_none(path) or {}
                notes = (found.get("metadata") or {}).get("annotations") or {}
                tokens = admission_record.load_list(
                    notes.get(admission_record.RECORDS_ANNOTATION, "")
                )
                records = admission_record.verify_all(
                    tokens, self.release.public, pool=pool, warn=lambda _: None
                )
                return len(records) == 2

            while not ready() and time.monotonic() - started < 120:
                time.sleep(0.1)
            times.append(round(time.monotonic() - started, 2) if ready() else None)
            self.say(f"quick pool {name}: traffic-ready after {times[-1]} s")
        self.result["apply_to_ready_s"] = times


def report(args: argparse.Namespace, measured: Obj) -> Obj:
    steady = measured.get("steady") or {}
    conv = measured.get("convergence") or {}
    quick = [t for t in measured.get("apply_to_ready_s") or [] if t is not None]
    rss = (measured.get("operator_rss_mb") or {}).get("peak")
    targets = [
        ("apply -> traffic-ready (median, s)", statistics.median(quick) if quick else None, 5.0),
        (f"{conv.get('pools')} pools converge (s)", conv.get("converged_s"), 60.0),
        (
            "steady writes per s per 100 endpoints",
            steady.get("operator_resources_writes_per_s_per_100_endpoints"),
            1.0,
        ),
        (
            "operator CPU per 1,000 endpoints (cores)",
            steady.get("operator_cpu_cores_per_1000_endpoints"),
            0.2,
        ),
        ("operator RSS peak (MB)", rss, 250.0),
    ]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return {
        "bench": "operator-scale",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "size": {
            "nodes": args.nodes,
            "pools": args.pools,
            "in_cluster_endpoints": args.in_cluster,
            "external_endpoints": args.external,
            "routes": args.routes,
            "interval": INTERVAL,
            "max_evidence_age": MAX_AGE,
            "operator_resync_s": args.resync,
        },
        **measured,
        "targets": [
            {"target": t, "measured": m, "limit": lim, "met": m is not None and m <= lim}
            for t, m, lim in targets
        ],
    }


def markdown(result: Obj) -> str:
    size, machine = result["size"], result["machine"]
    lines = [
        f"# Operator at scale ({result['date']}, commit {result['commit']})",
        "",
        f"{machine['cpus']} CPUs shared with other work (load average {machine['loadavg']} at "
        f"the end); sandbox control plane, kwok nodes, the operator and the agent fleet all on "
        f"this machine. Size: {size['nodes']} kwok nodes, {size['pools']} MinerPools, "
        f"{size['in_cluster_endpoints']} in-cluster + {size['external_endpoints']} external "
        f"endpoints, {size['routes']} Routes; reattestation every {size['interval']}, "
        f"maxEvidenceAge {size['max_evidence_age']}.",
        "",
        "| target | measured | limit | met |",
        "|---|---|---|---|",
    ]
    for t in result["targets"]:
        met = "met" if t["met"] else "NOT met"
        lines.append(f"| {t['target']} | {t['measured']} | ≤ {t['limit']} | {met} |")
    steady = result.get("steady") or {}
    lines += ["", "Steady-state apiserver writes per second, by resource:", ""]
    for key, value in (steady.get("writes_per_s_by_resource") or {}).items():
        lines.append(f"- {key}: {value}")
    conv = result.get("convergence") or {}
    lines += [
        "",
        f"Convergence: applying {conv.get('pools')} pools took {conv.get('apply_s')} s; every "
        f"pool had all its endpoints attested {conv.get('converged_s')} s after the first "
        f"apply; the cluster had every miner pod Ready at {conv.get('pods_ready_s')} s, so the "
        f"operator's own part was {conv.get('after_pods_ready_s')} s; the bench's fleet had "
        f"an agent answering on every pod at {conv.get('agents_answering_s')} s "
        f"({conv.get('after_agents_answering_s')} s before the last pool was attested). "
        "Progress (s since the first apply / pools done / endpoints attested / miner "
        "pods Running and Ready, as kwok reports them / their agents answering): "
        + ", ".join("/".join(str(x) for x in p) for p in conv.get("progress") or []),
        "",
        *_convergence_cost(conv),
        "Operator RSS while converging (s since the first apply / MB): "
        + ", ".join(f"{t}/{mb}" for t, mb in conv.get("operator_rss_mb") or []),
        "",
    ]
    notes = result.get("notes") or []
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)


def _convergence_cost(conv: Obj) -> list[str]:
    """The operator's CPU and the apiserver's requests while converging (results before
    they were recorded have neither)."""
    if conv.get("operator_cpu_s") is None:
        return []
    requests = ", ".join(f"{k} {v}" for k, v in (conv.get("requests") or {}).items())
    return [
        f"Operator CPU while converging: {conv['operator_cpu_s']} s. apiserver requests while "
        f"converging (every client; WATCH not counted), the largest: {requests}.",
        "",
    ]


def render(argv: list[str]) -> None:
    """`render RESULT.json [--note TEXT]...`: rewrite the result and its .md with notes (what a
    number needs to be read right: which sizes ran, why a larger one did not)."""
    parser = argparse.ArgumentParser(prog="operatorscale.py render")
    parser.add_argument("result", type=Path)
    parser.add_argument("--note", action="append", default=[])
    args = parser.parse_args(argv)
    result = json.loads(args.result.read_text())
    result["notes"] = args.note
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    args.result.with_suffix(".md").write_text(markdown(result))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "fleet":
        fleet_main(Path(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "render":
        render(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--pools", type=int, default=500)
    parser.add_argument("--in-cluster", type=int, default=2000)
    parser.add_argument("--external", type=int, default=500)
    parser.add_argument("--routes", type=int, default=200)
    parser.add_argument("--window", type=float, default=240.0)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--quick", type=int, default=3)
    parser.add_argument("--converge-timeout", type=float, default=300.0)
    parser.add_argument("--sandbox", default="tr-scale")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running")
    parser.add_argument("--profile", action="store_true", help="cProfile the operator")
    parser.add_argument("--resync", type=float, default=300.0, help="the operator's resync (s)")
    parser.add_argument("--out", type=Path, default=ROOT / "e2e" / "bench" / "results")
    args = parser.parse_args()
    result = report(args, Bench(args).run())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "operator-scale.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "operator-scale.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
