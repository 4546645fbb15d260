"""Secrets released to this enclave (docs/sealed-mode.md, section 4), held in memory.

`engine-api-key` is kept for the proxy, which sends it to the engine as
`Authorization: Bearer` on every forwarded request. Every other secret is also written to a
file named after it in the secrets directory (a tmpfs in the enclave), mode 0600 (in a 0700
directory when the agent creates it), for the engine container to read (so it must run as the
agent's user); without a directory they stay in memory only.

A release replaces the whole set: files of secrets no longer released are removed, and each
file is replaced atomically (written beside it, then renamed), so the engine never reads half
a value. Values are never logged, echoed or put into an error message.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path

from teeroute.sealing.secrets import ENGINE_API_KEY

MAX_RELEASE = 64 * 1024
"""Largest sealed release body (bytes)."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_BEARER = re.compile(r"[\x21-\x7e]{1,4096}")  # visible ASCII: a valid header value, one token


class SecretRejected(ValueError):
    """A release that cannot be applied; the message names the secret, never its value."""


class StaleRelease(ValueError):
    """A release not newer than the one applied (a replay, or one overtaken by a rotation)."""


class SecretStore:
    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = {}
        self._issued_ns = -1

    @property
    def engine_api_key(self) -> str | None:
        return self._secrets.get(ENGINE_API_KEY)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def replace(self, released: Mapping[str, str], issued_ns: int = 0) -> None:
        """Takes `released` as the enclave's secrets, in place of any earlier release, if it
        was issued after that one (`StaleRelease` otherwise: a captured release cannot be
        replayed to roll a rotated secret back)."""
        check(released)
        with self._lock:
            if issued_ns <= self._issued_ns:
                raise StaleRelease("secrets: the release is not newer than the one applied")
            if self._directory is not None:
                _write_files(self._directory, released, self._secrets)
            self._secrets = dict(released)
            self._issued_ns = issued_ns


def check(released: Mapping[str, str]) -> None:
    for name, value in released.items():
        if not _NAME.fullmatch(name):
            raise SecretRejected("secrets: a name is not a plain file name (A-Z a-z 0-9 . _ -)")
        if name == ENGINE_API_KEY and not _BEARER.fullmatch(value):
            raise SecretRejected(f"secrets: {ENGINE_API_KEY} is not a valid bearer token")


def _write_files(directory: Path, released: Mapping[str, str], earlier: Mapping[str, str]) -> None:
    # Made 0700 when the agent makes it; a volume mounted there keeps the mode the Pod gave it
    # (the agent may not own the mount point, so it does not chmod it).
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = {name: value for name, value in released.items() if name != ENGINE_API_KEY}
    for name, value in files.items():
        _write(directory / name, value.encode())
    for name in set(earlier) - set(files):
        (directory / name).unlink(missing_ok=True)


def _write(path: Path, data: bytes) -> None:
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        scratch.replace(path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
