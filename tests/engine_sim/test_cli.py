"""Settings from flags and the environment, and the two command lines."""

from __future__ import annotations

import pytest

from teeroute import cli
from teeroute_engine_sim import cli as engine_cli
from teeroute_engine_sim.errors import SettingsInvalid
from teeroute_engine_sim.settings import EngineSettings

ENV = ("TTFT_MS", "TOKENS_PER_S", "FAIL_RATE", "SEED", "MODELS", "HOST", "PORT", "WORKERS")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(f"TEEROUTE_ENGINE_{name}", raising=False)


def settings(*argv: str) -> EngineSettings:
    args, _ = engine_cli.engine_parser().parse_known_args(list(argv))
    return engine_cli.settings_from(args)


def test_defaults_serve_sim_model_on_loopback_port_8000_unpaced() -> None:
    assert settings() == EngineSettings(
        models=("sim-model",), host="127.0.0.1", port=8000, ttft_ms=0, tokens_per_s=0
    )


def test_the_operators_vllm_argv_is_understood() -> None:
    chosen = settings("--model", "meta-llama/Llama-3.1-8B-Instruct", "--host", "127.0.0.1",
                      "--port", "8000")  # fmt: skip
    assert (chosen.models, chosen.host, chosen.port) == (
        ("meta-llama/Llama-3.1-8B-Instruct",),
        "127.0.0.1",
        8000,
    )


def test_models_repeat_and_served_model_names_replace_them() -> None:
    assert settings("--model", "a", "--model", "b").models == ("a", "b")
    assert settings("--model", "org/big", "--served-model-name", "big", "alias").models == (
        "big",
        "alias",
    )


def test_vllm_flags_it_does_not_simulate_are_ignored_and_not_taken_for_ours() -> None:
    args, ignored = engine_cli.engine_parser().parse_known_args(
        ["--port", "9", "--tensor-parallel-size", "2", "--fail", "1"]
    )
    assert args.port == 9
    assert args.fail_rate is None
    assert ignored == ["--tensor-parallel-size", "2", "--fail", "1"]


def test_a_pods_environment_tunes_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEEROUTE_ENGINE_TTFT_MS", "120")
    monkeypatch.setenv("TEEROUTE_ENGINE_TOKENS_PER_S", "45.5")
    monkeypatch.setenv("TEEROUTE_ENGINE_FAIL_RATE", "0.25")
    chosen = settings()
    assert (chosen.ttft_ms, chosen.tokens_per_s, chosen.fail_rate) == (120, 45.5, 0.25)


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEEROUTE_ENGINE_TTFT_MS", "120")
    monkeypatch.setenv("TEEROUTE_ENGINE_FAIL_RATE", "0.25")
    chosen = settings("--ttft-ms", "5", "--fail-rate", "0")
    assert (chosen.ttft_ms, chosen.fail_rate) == (5, 0)


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--fail-rate", "1.5"], "fail_rate"),
        (["--ttft-ms", "-1"], "ttft_ms"),
        (["--port", "70000"], "port"),
        (["--workers", "0"], "workers"),
    ],
)
def test_invalid_settings_name_the_field(argv: list[str], field: str) -> None:
    with pytest.raises(SettingsInvalid, match=field):
        settings(*argv)


def test_an_invalid_environment_is_refused_before_serving(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEEROUTE_ENGINE_FAIL_RATE", "often")
    assert engine_cli.main(["--port", "1"]) == 2
    assert "fail_rate" in capsys.readouterr().err


def test_teeroute_lists_the_engine_sim_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    assert "engine-sim" in capsys.readouterr().out


def test_teeroute_engine_sim_refuses_invalid_settings_with_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["engine-sim", "--port", "1", "--fail-rate", "2"]) == 2
    assert "invalid engine-sim settings: fail_rate" in capsys.readouterr().err


def test_teeroute_engine_sim_is_strict_about_unknown_flags() -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["engine-sim", "--tensor-parallel-size", "2"])
    assert done.value.code == 2
