"""Package metadata for scanners and the base's package lock."""

from __future__ import annotations

from teeroute_images import dpkg
from teeroute_images.dpkg import Package

CONTROL = """Package: tzdata
Version: 2026b-0+deb12u1
Architecture: all
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Description: time zone and daylight-saving time data
 This package contains data required for the implementation of
 standard local time for many representative locations around the globe.
"""


def test_status_entry_marks_the_package_installed_right_after_its_name() -> None:
    lines = dpkg.status_entry(CONTROL).splitlines()
    assert lines[:3] == [
        "Package: tzdata",
        "Status: install ok installed",
        "Version: 2026b-0+deb12u1",
    ]
    assert lines[-1].startswith(" standard local time")


def test_a_control_paragraph_names_package_version_and_architecture() -> None:
    assert dpkg.package(CONTROL) == Package("tzdata", "2026b-0+deb12u1", "all")
    assert dpkg.fields(CONTROL)["Description"].count("\n") == 2


def test_the_lock_reads_back_what_it_wrote_sorted() -> None:
    packages = [Package("zlib1g", "1:1.2.13.dfsg-1", "amd64"), Package("libc6", "2.36-9", "amd64")]
    assert dpkg.parse_lock(dpkg.render_lock(packages)) == sorted(packages)


def test_drift_names_each_changed_added_and_removed_package() -> None:
    locked = [Package("libc6", "2.36-9", "amd64"), Package("gone", "1", "all")]
    served = [Package("libc6", "2.36-10", "amd64"), Package("new", "2", "all")]
    assert dpkg.drift(locked, served) == [
        "gone: 1 -> (none)",
        "libc6: 2.36-9 -> 2.36-10",
        "new: (none) -> 2",
    ]
    assert dpkg.drift(locked, locked) == []
