"""The demo client (e2e/demo/client.py) against real processes, no Kubernetes: an engine
simulator, two enclave agents on the simulated TEE in one pool, the gateway from a config
file, and `teeroute proxy`. The client's output must name the miner that really served each
request (the one whose agent took it), its TEE and measurement, and a receipt it verified
itself; a receipt that the serving enclave did not sign is reported INVALID."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from ..client.test_proxy_e2e import proxy, write_policy
from ..gateway.miners import agent, chip_dir, verified_lease
from ..gateway.procs import Proc, create_key, engine, gateway

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "e2e" / "demo" / "client.py"
MODEL = "sim-model"
UNSEALED = "sim-unsealed"
"""A second public model on the same pool whose Route sends prompts unsealed."""
NAMES = ("m0", "m1")


def load_client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_client", CLIENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


def route(name: str, model: str, sealing: str) -> dict[str, Any]:
    return {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "backends": [{"pool": "demo"}],
            "constraints": {"allowedTee": ["simulated"]},
            "sealing": sealing,
        },
    }


def gateway_config(path: Path, leases: list[dict[str, Any]]) -> Path:
    pool = {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "MinerPool",
        "metadata": {"name": "demo"},
        "spec": {
            "models": [{"name": MODEL, "contextLength": 8192}],
            "tee": {"type": "simulated"},
            "pricing": {"inputPerMillion": "1", "outputPerMillion": "2"},
            "endpoints": [{"name": lease["name"], "url": lease["url"]} for lease in leases],
        },
        "status": {"endpoints": leases},
    }
    settings = {"apiVersion": "teeroute.dev/v1alpha1", "kind": "GatewayConfig"}
    docs = [
        {**settings, "spec": {"ledger": "sqlite:///ledger.db"}},
        pool,
        route("sim", MODEL, "gateway"),
        route("sim-unsealed", UNSEALED, "off"),
    ]
    path.write_text(yaml.safe_dump_all(docs))
    return path


@dataclass
class Demo:
    tmp: Path
    gw: Proc
    key: str
    agents: dict[str, Proc]
    leases: dict[str, dict[str, Any]]
    policy: Path

    def served_counts(self) -> Counter[str]:
        """Chat requests each agent took, from its own log."""
        return Counter(
            {
                f"default/demo/{name}": proc.log.read_text().count("POST /v1/chat/completions")
                for name, proc in self.agents.items()
            }
        )

    def run_client(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, str(CLIENT), "--base-url", f"{self.gw.url}/v1"]
        argv += ["--api-key", self.key, "--max-tokens", "16", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("demo")
    chips = chip_dir(tmp_path_factory.mktemp("chips"))
    with (
        engine(tmp, "e0") as eng,
        agent(chips, eng.url, tmp / "m0.log") as m0,
        agent(chips, eng.url, tmp / "m1.log") as m1,
    ):
        agents = {"m0": m0, "m1": m1}
        leases = {name: verified_lease(name, proc.url, chips) for name, proc in agents.items()}
        config = gateway_config(tmp / "gateway.yaml", list(leases.values()))
        key = create_key(config, "10")
        policy = write_policy(tmp / "policy.json", chips, leases["m0"]["measurement"])
        with gateway(config) as gw:
            yield Demo(tmp, gw, key, agents, leases, policy)


def sections(stdout: str) -> list[dict[str, str]]:
    """The client's report, one dict of `field: value` per request."""
    found: list[dict[str, str]] = []
    for line in stdout.splitlines():
        if line.startswith("== "):
            found.append({"title": line[3:]})
        elif found and (match := re.match(r"^(\w+):\s+(.*)$", line)):
            found[-1][match.group(1)] = match.group(2)
    return found


def test_the_client_names_the_miner_that_served_each_request_and_a_valid_receipt(
    demo: Demo,
) -> None:
    before = demo.served_counts()
    with proxy(demo.gw, demo.policy, demo.key, demo.tmp / "proxy.log") as local:
        done = demo.run_client("--sealed-proxy", local.url)
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)  # shown with -s, or when the test fails
    plain, sealed = sections(done.stdout)
    assert plain["title"].startswith("plain request") and sealed["title"].startswith("sealed")
    took = demo.served_counts() - before
    assert Counter([plain["miner"], sealed["miner"]]) == took  # the agents that took them
    for report in (plain, sealed):
        lease = demo.leases[report["miner"].rsplit("/", 1)[1]]
        assert report["answer"]
        assert report["tee"] == "simulated"
        assert report["measurement"] == lease["measurement"]
        assert re.match(r"^\d+ s ago \(", report["attested"])
        assert report["receipt"].startswith("valid: signed by the enclave's attested key")
        assert "the gateway's verdict: valid" in report["receipt"]
        assert float(report["cost"].split()[0]) > 0
        record = httpx.get(
            f"{demo.gw.url}/v1/generation",
            params={"id": report["request"]},
            headers={"Authorization": f"Bearer {demo.key}"},
        ).json()["data"]
        assert record["receipt"]["hpke_key_sha256"] == lease["hpkeKeySha256"]


def test_an_unsealed_route_is_named_by_the_gateway_header_and_has_no_receipt(demo: Demo) -> None:
    before = demo.served_counts()
    done = demo.run_client("--model", UNSEALED)
    assert done.returncode == 0, done.stdout + done.stderr
    (plain,) = sections(done.stdout)
    assert Counter([plain["miner"]]) == demo.served_counts() - before
    assert plain["receipt"].startswith("none: the hop was not sealed")
    assert float(plain["cost"].split()[0]) > 0


def test_a_receipt_the_serving_enclave_did_not_sign_is_reported_invalid(demo: Demo) -> None:
    client = load_client()
    done = demo.run_client()
    (plain,) = sections(done.stdout)
    headers = {"Authorization": f"Bearer {demo.key}"}
    with httpx.Client(base_url=demo.gw.url, headers=headers, timeout=10) as http:
        record = client.generation(http, plain["request"])
        admitted = {row["endpoint"]: row for row in client.evidence(http, MODEL)}
    served = admitted[plain["miner"]]
    other = next(row for key, row in admitted.items() if key != plain["miner"])
    ok, verdict = client.receipt_verdict(record, served, plain["request"], True)
    assert ok and verdict.startswith("valid")
    # the other miner's key: as if the gateway had passed off one enclave's receipt as another's
    ok, verdict = client.receipt_verdict(record, other, plain["request"], True)
    assert not ok and "INVALID (receipt.signing_key" in verdict
    ok, verdict = client.receipt_verdict(record, served, "gen-someone-else", True)
    assert not ok and "INVALID (receipt.request_id" in verdict
    unsigned = {**record, "receipt": None}
    ok, verdict = client.receipt_verdict(unsigned, served, plain["request"], True)
    assert not ok  # a sealed request without a receipt is a failure, not a pass


def test_the_client_fails_when_the_gateway_is_unreachable() -> None:
    done = subprocess.run(
        [sys.executable, str(CLIENT), "--base-url", "http://127.0.0.1:9", "--api-key", "k"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "demo client: cannot reach the gateway" in done.stderr
    assert "Traceback" not in done.stderr
