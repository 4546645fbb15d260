"""Operator settings from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from teeroute_operator.settings import OperatorSettings


def test_defaults_are_cluster_wide_standalone() -> None:
    settings = OperatorSettings()
    assert (settings.namespaces, settings.peering, settings.resync_seconds) == ([], "", 30.0)


def test_namespaces_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEEROUTE_OPERATOR_NAMESPACES", "miners, staging,,")
    monkeypatch.setenv("TEEROUTE_OPERATOR_PEERING", "teeroute")
    settings = OperatorSettings()
    assert settings.namespaces == ["miners", "staging"]
    assert settings.peering == "teeroute"


def test_nonsense_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEEROUTE_OPERATOR_RESYNC_SECONDS", "-1")
    with pytest.raises(ValidationError, match="resync_seconds"):
        OperatorSettings()
