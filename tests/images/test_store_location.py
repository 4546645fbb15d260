"""The builder writes images where the sandbox's runner reads them, whichever of the cache
variables is set."""

from __future__ import annotations

import pytest

from teeroute_images import store
from teeroute_sandbox.settings import default_image_store


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"XDG_CACHE_HOME": "/srv/xdg"},
        {"TEEROUTE_CACHE_DIR": "/srv/teeroute"},
        {"TEEROUTE_CACHE_DIR": "/srv/teeroute", "XDG_CACHE_HOME": "/srv/xdg"},
        {"TEEROUTE_IMAGE_STORE": "/srv/store", "TEEROUTE_CACHE_DIR": "/srv/teeroute"},
    ],
)
def test_builder_and_runner_agree_on_the_store(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name in ("XDG_CACHE_HOME", "TEEROUTE_CACHE_DIR", "TEEROUTE_IMAGE_STORE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert store.default_store() == default_image_store()
