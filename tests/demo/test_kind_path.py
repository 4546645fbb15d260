"""The kind path for Docker users (e2e/kind) cannot run here (no Docker). What can be checked
without it is checked: it labels its worker as the sandbox's simulated-TEE pool, installs the
values file the chart tests render, sets only values the chart's schema accepts, reaches the
Service the chart makes, loads the very images the builder makes and the chart and examples
name, hands out simulated-TEE chips an agent can attest with, and passes shellcheck."""

from __future__ import annotations

import base64
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from teeroute_images.definitions import IMAGES
from teeroute_operator import profiles
from teeroute_sandbox import gobuild, nodepools
from teeroute_sandbox.settings import SandboxSettings
from tests.chart.helm import CHART, GATEWAY_KEY, OPERATOR_KEY, PRESETS, ROOT_PEM, Helm

from ..gateway.miners import NODE, agent, verified_lease
from ..gateway.procs import engine

ROOT = Path(__file__).resolve().parents[2]
KIND = ROOT / "e2e" / "kind"
UP = (KIND / "up.sh").read_text()


def load_plan() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kind_plan", KIND / "plan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


plan = load_plan()


def worker_labels() -> dict[str, str]:
    cluster = yaml.safe_load((KIND / "cluster.yaml").read_text())
    (worker,) = [n for n in cluster["nodes"] if n["role"] == "worker"]
    return dict(worker["labels"])


def test_the_kind_worker_is_labelled_as_the_sandbox_simulated_pool() -> None:
    labels = worker_labels()
    assert labels == {nodepools.SIMULATED_TEE_LABEL: "true"}
    assert labels.items() <= nodepools.KIND_SIMULATED.labels.items()
    # the MinerPool kind profile and the chart's kind preset select that worker
    assert profiles.KIND_SIMULATED.items() <= labels.items()
    preset = yaml.safe_load(plan.VALUES.read_text())
    for component in ("operator", "gateway"):
        assert preset[component]["nodeSelector"].items() <= labels.items()


def test_the_kind_script_installs_the_values_file_the_chart_tests_render() -> None:
    assert "kind" in PRESETS
    assert plan.VALUES == CHART / "values-kind.yaml"
    assert f"VALUES={plan.VALUES.relative_to(ROOT)}\n" in UP
    assert re.search(r'helm upgrade --install teeroute charts/teeroute .*\n.*-f "\$VALUES"', UP)


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = gobuild.ensure_built(SandboxSettings().cache_dir)["helm"]
    return Helm(binary, tmp_path_factory.mktemp("helm"))


def test_the_values_the_script_sets_are_ones_the_chart_schema_accepts(
    helm: Helm, tmp_path: Path
) -> None:
    sets = dict(re.findall(r'--set(?:-file)? "?([\w.\[\]]+)=("?\$?[\w-]+)', UP))
    assert set(sets) == {
        "gateway.operatorKey",
        "operator.gatewayKeys[0]",
        "gateway.keys.apiKeys.existingSecret",
        "simulatedTee.rootPem",
    }
    root = tmp_path / "root.crt"
    root.write_text(ROOT_PEM)
    api_keys = sets["gateway.keys.apiKeys.existingSecret"]
    rendered = helm.run(
        "template", "teeroute", str(CHART), "-n", "teeroute-system", "-f", str(plan.VALUES),
        "--set", f"gateway.operatorKey={OPERATOR_KEY}",
        "--set", f"operator.gatewayKeys[0]={GATEWAY_KEY}",
        "--set", f"gateway.keys.apiKeys.existingSecret={api_keys}",
        "--set-file", f"simulatedTee.rootPem={root}",
    )  # fmt: skip
    services = {
        o["metadata"]["name"]: o
        for o in yaml.safe_load_all(rendered)
        if o and o["kind"] == "Service"
    }
    forwarded = re.search(r"port-forward svc/([\w-]+) \"\$GATEWAY_PORT:(\d+)\"", UP)
    assert forwarded is not None
    name, port = forwarded.groups()
    assert int(port) in [p["port"] for p in services[name]["spec"]["ports"]]


def test_the_kind_script_loads_exactly_the_images_the_builder_makes() -> None:
    built = {spec.ref for spec in IMAGES.values()}
    wanted = plan.images()
    assert "teeroute.dev/operator:0.1.0" in wanted and "teeroute.dev/gateway:0.1.0" in wanted
    missing = [ref for ref in wanted if ref not in built]
    assert not missing, f"not made by `teeroute images build`: {missing}"


def test_the_simulated_tee_chips_let_a_real_agent_attest(tmp_path: Path) -> None:
    secret = plan.chip_secret("miners", plan.simulated_tee(tmp_path / "state", [NODE]))
    assert secret["metadata"] == {"name": "teeroute-simulated-tee", "namespace": "miners"}
    # the directory an agent sees: the Secret's files, and the root the operator trusts
    chips = tmp_path / "chips"
    chips.mkdir()
    for name, data in secret["data"].items():
        (chips / name).write_bytes(base64.b64decode(data))
    shutil.copy(tmp_path / "state" / "root.crt", chips / "root.crt")
    with engine(tmp_path, "e0") as eng, agent(chips, eng.url, tmp_path / "agent.log") as miner:
        lease = verified_lease("m0", miner.url, chips)  # asserts the evidence verified
    assert lease["tee"] == "simulated"


def test_a_node_keeps_its_chip_across_runs(tmp_path: Path) -> None:
    first = plan.simulated_tee(tmp_path, ["w1"])
    assert plan.simulated_tee(tmp_path, ["w1", "w2"])["w1.crt"] == first["w1.crt"]


@pytest.mark.parametrize("script", ["up.sh", "down.sh"])
def test_the_scripts_pass_shellcheck(script: str) -> None:
    subprocess.run(["bash", "-n", str(KIND / script)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    done = subprocess.run(["shellcheck", str(KIND / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
