"""RESULTS.md, its plots and the README's results block are what `make results` gives from the
committed result files; a missing or new result file is rendered, never a crash or a pass; the
capacity model's arithmetic and refusals."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from report import capacity, generate, headline, operator_points, readme, sources, verdicts
from report.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "e2e" / "bench"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_report(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m report` as `make results` runs it (once in this file: it imports matplotlib
    anew; the other tests call `main` in this process)."""
    env = {**os.environ, "PYTHONPATH": str(BENCH)}
    return subprocess.run(
        [sys.executable, "-m", "report", "--root", str(root), *args],
        capture_output=True, text=True, check=False, env=env, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def committed() -> dict[Path, bytes]:
    return generate.build(ROOT)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A repository root with the committed result files and README, nothing generated."""
    results = tmp_path / generate.RESULTS_DIR
    results.mkdir(parents=True)
    for path in (ROOT / generate.RESULTS_DIR).glob("*.json"):
        shutil.copy(path, results / path.name)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def markdown(root: Path) -> str:
    """RESULTS.md's text from `root`'s result files (what `build` writes, without the plots)."""
    return generate.document(sources.load_all(root / generate.RESULTS_DIR))


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk of a PNG."""
    found, at = [], len(PNG_SIGNATURE)
    while at < len(png):
        length = int.from_bytes(png[at : at + 4], "big")
        found.append((png[at + 4 : at + 8], png[at + 8 : at + 8 + length]))
        at += 12 + length
    return found


def test_committed_results_readme_and_plots_are_what_the_generator_gives(
    committed: dict[Path, bytes],
) -> None:
    assert generate.stale(ROOT, committed) == [], "run `make results` and commit what it writes"


def test_plots_are_byte_identical_pngs_without_timestamps_when_regenerated(
    committed: dict[Path, bytes],
) -> None:
    second = generate.build(ROOT)
    plots = {p: b for p, b in committed.items() if p.suffix == ".png"}
    assert {p.name for p in plots} >= {"gateway-latency.png", "gateway-throughput.png",
                                       "sealed-instant.png", "sealed-per-token.png"}  # fmt: skip
    for path, data in plots.items():
        assert data == second[path], f"{path} differs between two runs"
        assert data.startswith(PNG_SIGNATURE)
        found = chunks(data)
        assert found[0][0] == b"IHDR" and found[-1][0] == b"IEND"
        text = [body for kind, body in found if kind in (b"tEXt", b"iTXt", b"zTXt")]
        assert b"tIME" not in [kind for kind, _ in found]
        assert not [t for t in text if t.startswith((b"Software", b"Creation Time"))]


def test_a_stale_or_missing_generated_file_fails_check_until_regenerated(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--root", str(tree)]
    assert main([*root, "--check"]) == 1
    assert "e2e/bench/RESULTS.md is stale: run `make results`" in capsys.readouterr().err

    assert main(root) == 0
    assert main([*root, "--check"]) == 0

    results_md = tree / generate.RESULTS_MD
    results_md.write_text(results_md.read_text().replace("**not met**", "met"))
    (tree / generate.PLOTS_DIR / "old.png").write_bytes(PNG_SIGNATURE)
    capsys.readouterr()
    assert main([*root, "--check"]) == 1
    err = capsys.readouterr().err
    assert "RESULTS.md is stale" in err and "old.png is stale" in err

    assert main(root) == 0
    assert not (tree / generate.PLOTS_DIR / "old.png").exists()
    assert main([*root, "--check"]) == 0


def test_a_missing_result_file_reads_not_yet_measured(tree: Path) -> None:
    for name in ("sealed-paced", "gateway"):
        (tree / generate.RESULTS_DIR / f"{name}.json").unlink()
    outputs = generate.build(tree)
    text = outputs[generate.RESULTS_MD].decode()
    assert "| `sealed-paced.json` | — | not yet measured |" in text
    assert "Not yet measured: `results/gateway.json` is not committed." in text
    assert "Per-token results: not yet measured (`sealed-paced.json`)." in text
    assert "## Capacity model: 1.4 M tokens/s\n\nNot computed" in text
    names = {p.name for p in outputs}
    assert not names & {"sealed-per-token.png", "gateway-latency.png", "gateway-throughput.png"}


def write_json(tree: Path, name: str, data: dict[str, Any]) -> None:
    (tree / generate.RESULTS_DIR / f"{name}.json").write_text(json.dumps(data))


def test_a_new_file_with_checks_is_read_and_its_checks_rule(tree: Path) -> None:
    write_json(tree, "faults", {
        "bench": "faults", "date": "2026-12-05T05:00:00+00:00",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "machine": {"cpus": 2, "loadavg": [1.5, 1.25, 1.0]},
        "checks": [
            {"goal": "kill -9: books reconcile", "value": 0, "unit": "problems", "pass": True},
            {"goal": "no hold leak", "value": 3, "unit": "holds", "pass": False},
            "not a check", {"value": 1, "pass": True},
        ],
        "runs": [{"backend": "sqlite", "requests": 2500, "faults": [{"fault": "kill", "s": 1.5}]}],
    })  # fmt: skip
    text = markdown(tree)
    assert "| kill -9: books reconcile |  | 0 problems | met | `faults.json` |" in text
    assert "| no hold leak |  | 3 holds | **not met** | `faults.json` |" in text
    assert "each delivered answer in the ledger once" not in text  # the file's checks rule
    assert (
        "| [`faults.json`](results/faults.json) | faults | "
        "2026-12-05 05:00 UTC | `0123456789ab` | 2 CPUs; load 1.50 1.25 1.00 |" in text
    )
    assert (
        "| sqlite | 2,500 |" in text
        and "| of | fault | s |" in text
        and "| sqlite | kill | 1.50 |" in text
    )


def test_operator_scale_targets_convergence_and_cost_are_read(tree: Path) -> None:
    write_json(tree, "operator-scale", {
        "bench": "operator-scale", "date": "2026-12-05T05:00:00+00:00", "commit": "abc1234",
        "machine": {"cpus": 2, "loadavg": [1.5, 1.25, 1.0]},
        "convergence": {"pools": 500, "converged_s": 30.5,
                        "progress": [[2.0, 10, 40], [30.5, 500, 2500], [12.0, 200, 900]]},
        "steady": {"operator_cpu_cores_per_1000_endpoints": 0.05},
        "targets": [
            {"target": "500 pools converge (s)", "measured": 30.5, "limit": 60.0, "met": True},
            {"target": "operator RSS peak (MB)", "measured": 312.0, "limit": 250.0, "met": False},
            {"target": "apply -> traffic-ready (median, s)", "measured": None, "limit": 5.0,
             "met": False},
        ],
    })  # fmt: skip
    outputs = generate.build(tree)
    text = outputs[generate.RESULTS_MD].decode()
    assert "| 500 pools converge (s) (≤ 60) |  | 30.5 | met | `operator-scale.json` |" in text
    assert "| operator RSS peak (MB) (≤ 250) |  | 312 | **not met** |" in text
    assert "| apply -> traffic-ready (median, s) (≤ 5) |  | — | **not met** |" in text
    assert "MinerPool apply → attested traffic-ready ≤ 5 s" not in text  # the file's targets rule
    assert "| s: operator CPU per endpoint per interval | 3.00 ms | operator-scale.json:" in text
    assert outputs[generate.PLOTS_DIR / "operator-convergence.png"].startswith(PNG_SIGNATURE)


def test_overload_verdicts_are_read_with_their_limits(tree: Path) -> None:
    write_json(tree, "overload", {
        "bench": "overload", "date": "2026-12-05T05:00:00+00:00", "commit": "abc1234+dirty",
        "machine": {"cpu_count": 2},
        "verdicts": [
            {"goal": "recovery within seconds", "value": 2.5, "target": 5, "met": True},
            {"goal": "every 503 carries Retry-After", "value": 3, "target": 0, "met": False},
            {"goal": "1x throughput kept", "value": 0.96, "target": 0.8, "met": True},
            {"goal": "1x throughput kept", "value": 0.5, "target": 0.8, "met": False},
        ],
    })  # fmt: skip
    text = markdown(tree)
    assert "| recovery within seconds (≤ 5) |  | 2.50 | met | `overload.json` |" in text
    assert "| every 503 carries Retry-After (≤ 0) |  | 3 | **not met** |" in text
    assert "| 1x throughput kept (≥ 0.8) |  | 0.96 | met |" in text
    assert "| 1x throughput kept (≥ 0.8) |  | 0.50 | **not met** |" in text


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"convergence": {"progress": [[9.5, 500, 2500], [1.0, 3, 9], ["x", 1, 1]]}},
         [(3.0, 1.0), (500.0, 9.5)]),
        ({"runs": [{"pools": 100, "converge_s": 7.25}, {"pools": 50, "seconds": 3}]},
         [(50.0, 3.0), (100.0, 7.25)]),
        ({"convergence": {"pools": 500, "converged_s": None}}, []),
    ],
)  # fmt: skip
def test_convergence_points_from_either_shape(
    data: dict[str, Any], expected: list[tuple[float, float]]
) -> None:
    assert operator_points.convergence(data) == expected


def test_faults_without_checks_are_judged_by_books_and_holds() -> None:
    runs = [
        {"backend": "sqlite", "delivered": 530, "problem_count": 0, "holds_left": 0},
        {"backend": "postgres", "delivered": 566, "problem_count": 2, "holds_left": 1},
        {"backend": "broken"},
    ]
    rows = headline.fault_rows({"runs": runs}, "faults.json")
    assert [(r.who, r.measured, r.verdict) for r in rows] == [
        ("sqlite", "530 delivered, 0 problems", verdicts.MET),
        ("sqlite", "0 holds left", verdicts.MET),
        ("postgres", "566 delivered, 2 problems", verdicts.NOT_MET),
        ("postgres", "1 holds left", verdicts.NOT_MET),
    ]


def test_every_target_said_to_be_a_ci_test_names_a_test_that_exists() -> None:
    for goal, path in headline.CI_TESTS:
        assert (ROOT / path).exists(), f"{goal}: {path} is gone"


def test_an_unknown_result_file_is_summarised_under_other_result_files(tree: Path) -> None:
    write_json(tree, "zz-new", {"bench": "new", "rate": 12.5, "runs": [{"n": 1, "ok": True}]})
    text = markdown(tree)
    assert "## Other result files\n\n" in text and "### `zz-new.json`\n\n| field | value |" in text
    assert "| rate | 12.5 |" in text and "| n | ok |" in text and "| 1 | yes |" in text


def test_a_malformed_result_file_is_refused_naming_it(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / generate.RESULTS_DIR / "ledger.json").write_text("[1, 2]")
    assert main(["--root", str(tree)]) == 2
    assert capsys.readouterr().err == "results: ledger.json: the top level is not an object\n"

    (tree / generate.RESULTS_DIR / "ledger.json").write_text("{not json")
    refused = run_report(tree)
    assert refused.returncode == 2
    assert refused.stderr.startswith("results: ledger.json: not JSON")
    assert not (tree / generate.RESULTS_MD).exists()


def test_readme_without_the_results_markers_is_refused() -> None:
    with pytest.raises(readme.ReadmeBlockError, match="no results block"):
        readme.splice("# title\n", "block")
    spliced = readme.splice(f"a\n{readme.BEGIN}\nold\n{readme.END}\nb\n", "new")
    assert spliced == f"a\n{readme.BEGIN}\nnew\n{readme.END}\nb\n"


DEMAND = capacity.Demand(tokens_per_s=1.4e6, tokens_per_request=250, tokens_per_endpoint_s=4000)
COSTS = capacity.UnitCosts(
    gateway_cpu_s_per_request=0.01, agent_cpu_s_per_request=0.002, ledger_pairs_per_s=4000,
    sweep_cpu_s_per_endpoint=0.006, sweep_interval_s=60,
)  # fmt: skip


def test_capacity_model_arithmetic() -> None:
    result = capacity.capacity(DEMAND, COSTS)
    assert result.requests_per_s == pytest.approx(5600)
    assert result.gateway_cores == pytest.approx(56)
    assert result.agent_cores == pytest.approx(11.2)
    assert result.ledger_writes_per_s == pytest.approx(11200)
    assert result.ledger_instances == pytest.approx(1.4)
    assert result.endpoints == pytest.approx(350)
    assert result.operator_cores == pytest.approx(0.035)
    assert capacity.tokens_per_s_of(120e9) == pytest.approx(1_388_888.9, rel=1e-6)


@pytest.mark.parametrize(
    ("demand", "costs"),
    [
        ({"tokens_per_request": 0}, {}),
        ({"tokens_per_s": -1}, {}),
        ({"tokens_per_endpoint_s": math.nan}, {}),
        ({}, {"gateway_cpu_s_per_request": 0}),
        ({}, {"ledger_pairs_per_s": 0}),
        ({}, {"sweep_interval_s": 0}),
        ({}, {"agent_cpu_s_per_request": -0.1}),
        ({}, {"sweep_cpu_s_per_endpoint": math.nan}),
    ],
)
def test_capacity_model_refuses_inputs_no_measurement_gives(
    demand: dict[str, Any], costs: dict[str, Any]
) -> None:
    with pytest.raises(capacity.CapacityInputError, match="capacity input"):
        capacity.capacity(replace(DEMAND, **demand), replace(COSTS, **costs))


def test_committed_capacity_section_states_its_inputs_and_sources(
    committed: dict[Path, bytes],
) -> None:
    text = committed[generate.RESULTS_MD].decode()
    section = text[text.index("## Capacity model") : text.index("## Other measurements")]
    assert capacity.FORMULA in section
    scale = (ROOT / generate.RESULTS_DIR / "operator-scale.json").exists()
    operator = "operator-scale.json: steady" if scale else "sweep.json: mean of rounds"
    for source in ("ledger.json: postgres", operator, "sealed-paced.json", "sealed.json"):
        assert source in section


def test_operator_cost_falls_back_to_the_sweep_without_operator_scale(tree: Path) -> None:
    (tree / generate.RESULTS_DIR / "operator-scale.json").unlink(missing_ok=True)
    text = markdown(tree)
    assert "| s: operator CPU per endpoint per interval | 4.43 ms | sweep.json: mean of" in text


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"date": "2026-12-05T02:19:01+00:00", "commit": "50af075", "machine": "2 CPUs"},
         ("2026-12-05 02:19 UTC", "50af075", "2 CPUs")),
        ({"when": "2026-11-25T00:02:15+00:00", "versions": {"teeroute": "a43dbea"},
          "machine": {"cpu_model": "AMD EPYC", "cpus": 2, "load_before": "0.5 0.4 0.3"}},
         ("2026-11-25 00:02 UTC", "a43dbea", "AMD EPYC, 2 CPUs; load 0.5 0.4 0.3 before")),
        ({"facts": {"when": "2026-11-24T23:49:45+00:00", "cpus": 2, "machine": "x86_64",
                    "python": "3.11.7", "load_average_1m": 4.64}},
         ("2026-11-24 23:49 UTC", "not recorded", "2 CPUs, x86_64, Python 3.11.7; load 4.64")),
        ({}, ("not recorded", "not recorded", "not recorded")),
    ],
)  # fmt: skip
def test_meta_reads_every_shape_of_date_commit_and_machine(
    data: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    meta = sources.meta("x", data)
    assert (meta.date, meta.commit, meta.machine) == expected


def test_checks_become_rows_and_an_unrun_check_is_never_met() -> None:
    checks = [
        {"goal": "a ≤ 8 µs", "mode": "gateway", "streams": 64, "value": 9.25, "pass": False},
        {"goal": "b", "target": "gateway", "value": 2815.0, "unit": "req/s", "pass": True},
        {"goal": "c", "value": None, "unit": "x", "pass": None},
        {"goal": "d", "value": 1, "pass": "yes"},
        ["not", "a", "check"],
    ]
    rows = verdicts.check_rows(checks, "f.json", who_names=verdicts.MODE_NAMES)
    assert [(r.who, r.measured, r.verdict) for r in rows] == [
        ("gateway-sealed, 64 streams", "9.25 µs", verdicts.NOT_MET),
        ("teeroute", "2,815 req/s", verdicts.MET),
        ("", "—", verdicts.NOT_RUN),
        ("", "1", verdicts.NOT_RUN),
    ]


@pytest.mark.parametrize(
    ("value", "limit", "at_most", "verdict"),
    [(0.95, 0.9, False, verdicts.MET), (0.89, 0.9, False, verdicts.NOT_MET),
     (1.26, 1.25, True, verdicts.NOT_MET), (1.25, 1.25, True, verdicts.MET),
     (None, 0.9, False, verdicts.NOT_RUN)],
)  # fmt: skip
def test_ratio_rows(value: float | None, limit: float, at_most: bool, verdict: str) -> None:
    assert verdicts.ratio_row("g", "w", value, limit, "s", at_most=at_most).verdict == verdict


def test_sweep_target_is_the_sweep_cpu_spread_over_the_interval() -> None:
    rounds = [
        {"endpoints": 1000, "operator_cpu_s": 6.0},
        {"endpoints": 1000, "operator_cpu_s": 18.0},
    ]
    met = headline.sweep_row({"rounds": rounds[:1]}, "sweep.json")
    missed = headline.sweep_row({"rounds": rounds}, "sweep.json")
    assert met.measured.startswith("0.10 core") and met.verdict == verdicts.MET
    assert missed.measured.startswith("0.20 core") and missed.verdict == verdicts.MET
    over = headline.sweep_row({"rounds": [{"endpoints": 500, "operator_cpu_s": 7.0}]}, "s")
    assert over.measured.startswith("0.23 core") and over.verdict == verdicts.NOT_MET
    assert headline.sweep_row({"rounds": []}, "s").verdict == verdicts.NOT_RUN


@pytest.mark.parametrize(
    ("data", "measured", "verdict"),
    [
        ({"restarts": 50, "converged": True, "converge_s": 12.5, "problems_left": []},
         "50 restarts; converged 12.5 s after the last", verdicts.MET),
        ({"restarts": 49, "converged": True, "converge_s": 3.0},
         "49 restarts; converged 3.0 s after the last", verdicts.NOT_MET),
        ({"restarts": 50, "converged": False, "problems_left": ["orphan pod", "dup slice"]},
         "50 restarts; not converged, 2 problems left", verdicts.NOT_MET),
        ({"restarts": "50", "converged": True}, "—", verdicts.NOT_RUN),
    ],
)  # fmt: skip
def test_operator_churn_target_needs_50_restarts_and_convergence(
    data: dict[str, Any], measured: str, verdict: str
) -> None:
    row = headline.churn_row(data, "operator-churn.json")
    assert (row.measured, row.verdict) == (measured, verdict)


def test_a_churn_file_without_checks_is_read_by_its_own_fields(tree: Path) -> None:
    write_json(tree, "operator-churn", {
        "bench": "operator-churn", "date": "2026-12-05T05:10:00+00:00", "commit": "def5678",
        "machine": {"cpus": 2, "load_before": [2.5, 2.0, 1.5]},
        "config": {"restarts": 50, "pools": 12}, "restarts": 50, "converged": True,
        "converge_s": 8.5, "problems_left": [], "signals": {"SIGKILL": 26, "SIGTERM": 24},
    })  # fmt: skip
    text = markdown(tree)
    assert "| 50 restarts; converged 8.5 s after the last | met | `operator-churn.json` |" in text
    assert "| `def5678` | 2 CPUs; load 2.50 2.00 1.50 before |" in text
    assert "| config.pools | 12 |" in text and "| signals.SIGKILL | 26 |" in text
