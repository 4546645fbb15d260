"""Debian package metadata for scanners, and the committed package lock (pure functions).

Extract mode runs no maintainer script and leaves /var/lib/dpkg/status empty; like the
distroless images we write one `var/lib/dpkg/status.d/<package>` file per package (its
control fields and an installed status), which Trivy, Grype and Syft read.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCK_HEADER = (
    "# Debian packages of the base layer, as the mirror served them at the last lock update.\n"
    "# Written by `teeroute images build --update-lock`; a build warns when the mirror now\n"
    "# serves other versions (the image's digests then differ from a build of this lock).\n"
)


@dataclass(frozen=True, order=True)
class Package:
    name: str
    version: str
    architecture: str


def fields(control: str) -> dict[str, str]:
    """The fields of one control paragraph (continuation lines joined back)."""
    found: dict[str, str] = {}
    last = ""
    for line in control.splitlines():
        if line[:1] in {" ", "\t"} and last:
            found[last] += "\n" + line
        elif ":" in line:
            last, _, value = line.partition(":")
            found[last] = value.strip()
    return found


def package(control: str) -> Package:
    found = fields(control)
    return Package(found["Package"], found["Version"], found["Architecture"])


def status_entry(control: str) -> str:
    """The status.d file of a package: its control paragraph with an installed status."""
    lines = control.rstrip("\n").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Package:")) + 1
    return "\n".join([*lines[:at], "Status: install ok installed", *lines[at:]]) + "\n"


def render_lock(packages: list[Package]) -> str:
    body = "".join(f"{p.name} {p.version} {p.architecture}\n" for p in sorted(packages))
    return LOCK_HEADER + body


def parse_lock(text: str) -> list[Package]:
    return [
        Package(*line.split())
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def drift(locked: list[Package], resolved: list[Package]) -> list[str]:
    """What changed between the lock and what the mirror served, one line per package."""
    before = {p.name: p.version for p in locked}
    after = {p.name: p.version for p in resolved}
    lines = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name, "(none)"), after.get(name, "(none)")
        if old != new:
            lines.append(f"{name}: {old} -> {new}")
    return lines
