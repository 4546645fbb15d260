"""Which images a command line builds."""

from __future__ import annotations

import pytest

from teeroute_images.errors import UnknownImage
from teeroute_images.selection import chosen


def names(*args: str, every: bool = False) -> list[str]:
    return [spec.name for spec in chosen(list(args) or None, every=every)]


def test_default_builds_every_cpu_image_but_not_the_gpu_miner() -> None:
    assert names() == ["operator", "gateway", "agent", "engine-sim"]


def test_the_gpu_miner_is_built_when_named_or_with_all() -> None:
    assert names("miner-vllm") == ["miner-vllm"]
    assert "miner-vllm" in names(every=True)


def test_names_keep_their_order_once_each() -> None:
    assert names("agent", "gateway", "agent") == ["agent", "gateway"]


def test_an_unknown_image_is_a_clear_error() -> None:
    with pytest.raises(UnknownImage, match="no image named agnet"):
        chosen(["agnet"])
