"""The gateway benchmark's pure parts: wrk's script and summary, stream usage, the RSS slope,
the goals' verdicts and the report. No network, no processes started."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from gatewaybench import litellm, notes, procs, report, scenarios, stats, targets, wrk

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:8000/v1/chat/completions
  1 threads and 4 connections
Requests/sec:    812.34
WRK_SUMMARY {"requests":4062,"duration_us":5000412,"bytes":2100000,"non200":3,"bad_body":1,\
"connect_errors":0,"read_errors":2,"write_errors":0,"timeouts":1,"p50_us":812,"p90_us":1500,\
"p99_us":4900,"p999_us":9000,"max_us":12000,"mean_us":950.5}
WRK_FIRST_BAD 429 {"error": "rate limited"}
"""


def load(**changes: Any) -> wrk.Load:
    base: dict[str, Any] = {
        "path": "/v1/chat/completions",
        "body": scenarios.body(16, stream=False),
        "headers": {"Authorization": "Bearer sk-test"},
        "connections": 4,
        "seconds": 5,
    }
    return wrk.Load(**(base | changes))


def test_wrk_summary_is_parsed_with_every_error_counted() -> None:
    result = wrk.parse_output(WRK_OUTPUT)
    assert result.requests == 4062
    assert result.rps == pytest.approx(4062 / 5.000412)
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (0.812, 4.9, 12.0)
    assert (result.non200, result.bad_body, result.socket_errors) == (3, 1, 3)
    assert result.errors == 7
    assert result.first_bad == '429 {"error": "rate limited"}'
    assert result.to_json()["errors"] == 7


def test_wrk_output_without_summary_is_an_error() -> None:
    with pytest.raises(procs.BenchError, match="WRK_SUMMARY"):
        wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_lua_script_posts_the_body_checks_status_and_prints_a_summary() -> None:
    script = wrk.lua_script(load(think_ms=10, expect="[DONE]"))
    assert f"wrk.body = [==[{scenarios.body(16, stream=False)}]==]" in script
    assert 'wrk.headers["Authorization"] = [==[Bearer sk-test]==]' in script
    assert "local think_ms = 10" in script
    assert "local expect = [==[[DONE]]==]" in script
    assert "if status ~= 200 then" in script
    assert 'WRK_SUMMARY {"requests":%d' in script  # braces survived str.format
    assert "local threads = {}" in script


def test_lua_script_refuses_text_that_would_end_a_long_bracket() -> None:
    with pytest.raises(ValueError, match="long-bracket"):
        wrk.lua_script(load(body='{"x": "]==]"}'))


def test_wrk_command_is_pinned_and_keeps_slow_answers() -> None:
    argv = wrk.command("http://127.0.0.1:9", load(), Path("/tmp/load.lua"), core=1)
    assert argv[:3] == ["taskset", "-c", "1"]
    assert argv[3:] == [
        "wrk", "-t1", "-c4", "-d5s", "--timeout", "30s", "-s", "/tmp/load.lua",
        "http://127.0.0.1:9/v1/chat/completions",
    ]  # fmt: skip


def test_request_bodies_ask_for_usage_only_when_streaming() -> None:
    assert "stream" not in json.loads(scenarios.body(16, stream=False))
    streamed = json.loads(scenarios.body(256, stream=True))
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}
    assert streamed["max_tokens"] == 256


def test_stream_usage_takes_the_count_from_the_usage_chunk() -> None:
    chunks = [
        {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"content": "a"}}]},
        {"choices": [{"delta": {"content": " b"}}], "usage": None},
        {"choices": [], "usage": {"completion_tokens": 2, "prompt_tokens": 7}},
    ]
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    assert scenarios.stream_usage(sse) == (2, 2, True)
    assert scenarios.stream_usage("data: " + json.dumps(chunks[1]) + "\n\n") == (None, 1, False)


@pytest.mark.parametrize(
    ("samples", "slope"),
    [
        ([(0.0, 100.0), (60.0, 101.0), (120.0, 102.0)], 1.0),
        ([(0.0, 50.0), (30.0, 50.0), (60.0, 50.0), (90.0, 50.0)], 0.0),
        ([(0.0, 10.0), (60.0, 8.0), (120.0, 6.0)], -2.0),
        ([(0.0, 10.0), (60.0, 11.0)], None),
        ([(5.0, 10.0), (5.0, 11.0), (5.0, 12.0)], None),
    ],
)
def test_slope_is_a_least_squares_fit_in_mb_per_minute(
    samples: list[tuple[float, float]], slope: float | None
) -> None:
    found = stats.slope_per_minute(samples)
    assert found == (pytest.approx(slope) if slope is not None else None)


def test_rss_summary_leaves_the_warm_up_out_of_the_trend() -> None:
    samples = [(0.0, 50.0), (5.0, 80.0), (10.0, 90.0), (20.0, 90.0), (30.0, 90.0)]
    summary = stats.rss_summary(samples, warmup_s=10)
    assert summary["slope_mb_per_min"] == 0.0
    assert summary["flat"] is True
    assert (summary["start_mb"], summary["after_warmup_mb"], summary["max_mb"]) == (50, 90, 90)
    leaking = stats.rss_summary([(t * 60.0, 100.0 + 3 * t) for t in range(5)], warmup_s=0)
    assert leaking["flat"] is False


def test_soak_warm_up_is_a_tenth_up_to_a_minute() -> None:
    assert stats.soak_warmup_s(20) == 2
    assert stats.soak_warmup_s(600) == 60
    assert stats.soak_warmup_s(3600) == 60


def scenario(rps: float, p50: float = 1.0, p99: float = 2.0, errors: int = 0) -> dict[str, Any]:
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": errors,
        "requests": 100,
        "first_bad": "500 boom" if errors else "",
        "target_cpu_util": 0.3,
        "core_busy": {"0": 0.3, "1": 0.9},
    }


def results() -> dict[str, Any]:
    direct = {"moderate": scenario(400, 0.5, 1.0), "throughput": scenario(8000)}
    gateway = {
        "moderate": scenario(399, 1.2, 3.0),
        "throughput": scenario(2000),
        "streamed": scenario(300) | {"tokens_per_s": 76_500},
        "soak": scenario(1800, errors=2) | {"rss": {"slope_mb_per_min": 0.2}},
    }
    litellm_ = {"moderate": scenario(30, 100, 600), "throughput": scenario(40)}
    found = {
        "direct": {"available": True, **direct},
        "gateway": {"available": True, **gateway},
        "litellm": {"available": True, **litellm_},
    }
    for name in ("gateway", "litellm"):
        found[name]["added"] = stats.added(direct["moderate"], found[name]["moderate"])
        found[name]["errors"] = stats.errors(found[name])
    found["direct"]["errors"] = 0
    return found


def test_verdicts_name_each_goal_per_target_with_its_value() -> None:
    rows = {
        (r["goal"][:12], r["target"]): r for r in stats.verdicts(results(), ["gateway", "litellm"])
    }
    assert rows[("added p50 ≤ ", "gateway")]["value"] == pytest.approx(0.7)
    assert rows[("added p50 ≤ ", "gateway")]["pass"] is True
    assert rows[("added p50 ≤ ", "litellm")]["pass"] is False
    assert rows[("≥ 10x LiteLL", "gateway")]["value"] == 50.0
    assert ("≥ 10x LiteLL", "litellm") not in rows
    assert rows[("streamed ≥ 5", "litellm")]["pass"] is None  # not measured
    assert rows[("every reques", "gateway")] | {"goal": ""} == {
        "goal": "", "target": "gateway", "value": 2, "unit": "errors", "pass": False,
    }  # fmt: skip


def test_an_unavailable_target_gets_no_verdicts() -> None:
    found = {"gateway": {"available": False, "reason": "not available: no cli"}}
    assert {r["pass"] for r in stats.verdicts(found, ["gateway"])} == {None}


def test_observations_say_what_qualifies_the_numbers() -> None:
    found = results()
    found["gateway"]["throughput"] |= {"target_cpu_util": 0.5, "core_busy": {"0": 0.9}}
    found["gateway"]["streamed"] |= {"target_cpu_util": 0.7, "core_busy": {"0": 0.7, "1": 1.0}}
    found["litellm"] = {"available": False, "reason": "failed: x exited:\nTraceback\nBoom: no"}
    said = notes.observations(found, cores=(0, 1), quick=True, gateway_soak_s=20)
    assert "**litellm: failed: x exited: … Boom: no** (whole message in the JSON)" in said
    assert "**gateway / soak: 2 errors** of 100 requests (first: 500 boom)" in said
    assert any("gateway / throughput: core 0 was also busy 0.40" in line for line in said)
    assert any("gateway / throughput: used 0.50 of its core, not bound" in line for line in said)
    assert any("gateway / streamed: used 0.70 of its core, core 1" in line for line in said)
    assert "gateway soak 20 s, shorter than the 10-minute goal" in said
    assert "gateway: only 100 streams completed on 16 connections" in " ".join(said)
    assert notes.other_tenants({"core_busy": {}, "target_cpu_util": 0.5}, None) is None


def document(found: dict[str, Any]) -> dict[str, Any]:
    return {
        "when": "2026-01-01T00:00:00+00:00",
        "profile": "quick",
        "command": "python3 -m uv run --frozen python e2e/bench/gateway.py --quick",
        "machine": {
            "cpu_model": "AMD EPYC",
            "cpus": 2,
            "platform": "Linux",
            "python": "3.11.7",
            "load_before": "0.10",
            "load_after": "1.00",
        },
        "versions": {"uvicorn": "0.54.0", "litellm": litellm.VERSION},
        "pinning": "gateway on core 0",
        "setup_notes": ["litellm: no database"],
        "results": found,
        "checks": stats.verdicts(found, ["gateway", "litellm"]),
        "notes": ["quick profile"],
    }


def test_report_is_a_target_by_metric_table_with_goals_and_facts() -> None:
    found = results()
    found["litellm"] = {"available": False, "reason": "not available: test"}
    text = report.render(document(found))
    lines = text.splitlines()
    assert "| metric | direct | gateway | litellm |" in lines
    assert "| **added p50 ms** (vs direct) | — | 0.70 | n/a |" in lines
    assert "| **max req/s** (64 connections) | 8000 | 2000 | n/a |" in lines
    assert "| **soak RSS slope MB/min** (after warm-up) | — | 0.20 | n/a |" in lines
    assert "| every request answered 200 | gateway | **miss** (2 errors) |" in lines
    assert "| added p50 ≤ 1 ms (moderate load) | litellm | not run |" in lines
    assert "- pinning: gateway on core 0" in lines
    assert f"litellm {litellm.VERSION}" in text


def test_report_files_hold_the_same_document(tmp_path: Path) -> None:
    json_path, md_path = report.write(tmp_path, document(results()))
    assert json.loads(json_path.read_text())["results"]["gateway"]["throughput"]["rps"] == 2000
    assert md_path.read_text().startswith("# Gateway benchmark (2026-01-01")


def test_litellm_config_routes_the_model_to_the_simulator_with_a_master_key() -> None:
    config = yaml.safe_load(litellm.config("http://127.0.0.1:8123"))
    (model,) = config["model_list"]
    assert model["model_name"] == targets.MODEL
    assert model["litellm_params"]["model"] == "openai/sim-model"
    assert model["litellm_params"]["api_base"] == "http://127.0.0.1:8123/v1"
    assert config["general_settings"] == {"master_key": litellm.MASTER_KEY}
    assert "database_url" not in config["general_settings"]


def test_litellm_runs_one_worker_without_a_database(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = litellm.argv(Path("/venv"), Path("/c.yaml"), 4000)
    assert argv[argv.index("--num_workers") + 1] == "1"
    monkeypatch.setenv("DATABASE_URL", "postgresql://x")
    assert "DATABASE_URL" not in litellm.environment()


def test_litellm_is_pinned_and_gets_our_http_parser() -> None:
    litellm_pin, parser_pin = litellm.requirements("1.2.3")
    assert litellm_pin == "litellm[proxy]==1.2.3"
    assert parser_pin.startswith("httptools==")
    assert litellm.venv_dir("1.2.3").name == "litellm-1.2.3"


def test_installed_version_reads_the_dist_info(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    (site / "litellm-1.108.7.dist-info").mkdir(parents=True)
    (site / "litellm_enterprise-0.1.2.dist-info").mkdir()
    assert litellm.installed_version(tmp_path, "litellm") == "1.108.7"
    assert litellm.installed_version(tmp_path, "uvicorn") is None


def test_gateway_config_has_the_three_documents_with_the_upstream() -> None:
    documents = list(yaml.safe_load_all(targets.gateway_config("http://127.0.0.1:8123")))
    assert [d["kind"] for d in documents] == ["GatewayConfig", "MinerPool", "Route"]
    assert documents[1]["spec"]["endpoints"] == [{"name": "sim-0", "url": "http://127.0.0.1:8123"}]
    assert documents[2]["spec"]["rateLimits"]["requestsPerMinute"] >= 10**8


def test_proc_readings_cover_this_process() -> None:
    pid = os.getpid()
    assert pid in procs.tree(pid)
    assert procs.rss_mb(pid) > 1
    assert procs.cpu_seconds(pid) > 0
    busy = procs.busy_seconds_by_core()
    assert sorted(busy) == list(range(len(busy))) and all(s > 0 for s in busy.values())
    assert procs.pinned(["wrk"], None) == ["wrk"]
