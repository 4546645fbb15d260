"""The `teeroute` command line: subcommands from components, errors as exit codes."""

from __future__ import annotations

import pytest

from teeroute import cli
from teeroute_sandbox import cluster
from teeroute_sandbox.errors import NamespacesNotPermitted


def test_help_lists_the_sandbox_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    assert "sandbox" in capsys.readouterr().out


def test_exec_on_a_sandbox_that_is_not_up_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["sandbox", "exec", "--name", "never-started", "--", "true"])
    assert code == 6
    assert "sandbox 'never-started' is not up: run `teeroute sandbox up`" in capsys.readouterr().err


def test_exec_without_a_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sandbox", "exec", "--name", "never-started"]) == 1
    assert "nothing to run" in capsys.readouterr().err


def test_status_of_a_missing_sandbox_is_not_healthy(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sandbox", "status", "--name", "never-started"]) == 1
    assert "not healthy" in capsys.readouterr().out


def test_up_without_root_explains_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster.os, "geteuid", lambda: 1000)
    with pytest.raises(NamespacesNotPermitted, match="must run as root"):
        cluster.Sandbox().up()


def test_unknown_action_is_rejected_by_the_parser() -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["sandbox", "explode"])
    assert done.value.code == 2
