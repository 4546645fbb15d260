"""The base's package lock: a build says which packages the mirror now serves differently."""

from __future__ import annotations

import io
from pathlib import Path

from teeroute_images import dpkg
from teeroute_images.build import _check_lock
from teeroute_images.dpkg import Package
from teeroute_images.progress import Progress

LOCKED = [Package("libc6", "2.36-9+deb12u13", "amd64"), Package("tzdata", "2026a-0", "all")]
SERVED = [Package("libc6", "2.36-9+deb12u14", "amd64"), Package("tzdata", "2026a-0", "all")]


def check(lock: Path, served: list[Package], *, update: bool = False) -> str:
    out = io.StringIO()
    locked = lock.read_text() if lock.exists() else ""
    _check_lock(lock, locked, served, update, Progress(out))
    return out.getvalue()


def test_drift_is_named_package_by_package_and_the_lock_is_kept(tmp_path: Path) -> None:
    lock = tmp_path / "packages.lock"
    lock.write_text(dpkg.render_lock(LOCKED))
    said = check(lock, SERVED)
    assert "WARNING the mirror now serves other versions" in said
    assert "libc6: 2.36-9+deb12u13 -> 2.36-9+deb12u14" in said
    assert "tzdata" not in said
    assert dpkg.parse_lock(lock.read_text()) == LOCKED


def test_update_lock_records_what_the_mirror_serves(tmp_path: Path) -> None:
    lock = tmp_path / "packages.lock"
    lock.write_text(dpkg.render_lock(LOCKED))
    assert "wrote" in check(lock, SERVED, update=True)
    assert dpkg.parse_lock(lock.read_text()) == SERVED


def test_a_missing_lock_is_written_and_an_unchanged_one_is_silent(tmp_path: Path) -> None:
    lock = tmp_path / "packages.lock"
    check(lock, SERVED)
    assert dpkg.parse_lock(lock.read_text()) == SERVED
    assert check(lock, SERVED) == ""


def test_the_committed_lock_describes_a_python_base() -> None:
    lock = Path(__file__).resolve().parents[2] / "enclave-images/base/packages.lock"
    names = {p.name for p in dpkg.parse_lock(lock.read_text())}
    assert {"python3.11-minimal", "libpython3.11-stdlib", "libc6", "tzdata", "base-files"} <= names
