"""Shared fixtures of the client's tests: one simulated chip per module, a policy trusting it."""

from __future__ import annotations

from pathlib import Path

import pytest

from teeroute.client.policy import ClientPolicy

from .fakes import Chip, make_chip, simulated_policy


@pytest.fixture(scope="module")
def chip() -> Chip:
    return make_chip()


@pytest.fixture
def policy(chip: Chip, tmp_path: Path) -> ClientPolicy:
    return simulated_policy(chip, tmp_path)
