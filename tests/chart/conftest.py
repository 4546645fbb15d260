"""Fixtures of the chart tests: helm, built from the Go module proxy like the kube binaries
(cached under ~/.cache/teeroute/bin; a cold build takes a few minutes)."""

from __future__ import annotations

import pytest

from teeroute_sandbox import gobuild
from teeroute_sandbox.settings import SandboxSettings
from tests.chart.helm import Helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = gobuild.ensure_built(SandboxSettings().cache_dir)["helm"]
    return Helm(binary, tmp_path_factory.mktemp("helm"))
