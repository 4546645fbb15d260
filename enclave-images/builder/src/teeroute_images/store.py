"""Where images go and where layers are cached, unless the command line says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

STORE_ENV = "TEEROUTE_IMAGE_STORE"


def cache_home() -> Path:
    """`<teeroute cache>/images`, the teeroute cache being where the sandbox looks too:
    $TEEROUTE_CACHE_DIR, else $XDG_CACHE_HOME/teeroute, else ~/.cache/teeroute."""
    explicit = os.environ.get("TEEROUTE_CACHE_DIR")
    if explicit:
        return Path(explicit) / "images"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "teeroute" / "images"


def default_store() -> Path:
    """The one OCI layout the sandbox runner reads: $TEEROUTE_IMAGE_STORE or the cache's."""
    configured = os.environ.get(STORE_ENV)
    return Path(configured) if configured else cache_home() / "oci"


def default_cache() -> Path:
    return cache_home() / "cache"
