"""The application layers: third-party wheels from the lock, and our own wheels.

Third-party: `uv export --frozen --no-dev --package <pkg>` (every requirement pinned with its
hashes) plus, for vLLM, a committed hash-pinned lock, installed with `--require-hashes
--only-binary :all:` for the base's CPython 3.11 and glibc. Ours: wheels of the workspace
packages the export names, built with `uv build`. Both land in /app/site-packages (PYTHONPATH);
console scripts are dropped (their shebangs name the build host's interpreter) and so are
`direct_url.json` and `uv_cache.json` (the build directory and time), then everything is
precompiled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from teeroute_images import pyc
from teeroute_images.definitions import PYTHON_PLATFORM, SITE_PACKAGES, SOURCE_DATE_EPOCH, ImageSpec
from teeroute_images.errors import ImageBuildError

BUILD_RECORDS = ("direct_url.json", "uv_cache.json")
"""Installer records of where and when a local wheel was built: they differ per build."""


@dataclass(frozen=True)
class Requirements:
    third_party: str
    """Hash-pinned requirements (requirements.txt syntax)."""
    workspace: tuple[str, ...]
    """Our packages' folders, relative to the repository."""


def uv_command() -> list[str]:
    """The uv that runs us (`uv run` sets $UV), else one on PATH, else python3's module."""
    if os.environ.get("UV"):
        return [os.environ["UV"]]
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


def uv(*args: str, cwd: Path) -> str:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
    env.pop("VIRTUAL_ENV", None)  # `uv pip --target` must not care which venv runs us
    done = subprocess.run(
        [*uv_command(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ImageBuildError(f"uv {args[0]} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def split_export(exported: str) -> Requirements:
    """Separate our workspace folders (`./sdk`) from the pinned third-party requirements."""
    workspace = tuple(
        sorted(line.strip()[2:] for line in exported.splitlines() if line.startswith("./"))
    )
    kept = [line for line in exported.splitlines() if not line.startswith("./")]
    return Requirements("\n".join(kept) + "\n", workspace)


def requirements(spec: ImageSpec, repo: Path) -> Requirements:
    exported = uv(
        "export",
        "--frozen",
        "--no-dev",
        "--no-editable",
        "--no-header",
        "--format",
        "requirements-txt",
        "--package",
        spec.package,
        cwd=repo,
    )
    found = split_export(exported)
    if spec.requirements is None:
        return found
    extra = (repo / spec.requirements).read_text()
    return Requirements(found.third_party + extra, found.workspace)


def install_args(target: Path) -> list[str]:
    return [
        "pip",
        "install",
        "--quiet",
        "--no-config",
        "--no-deps",
        "--target",
        str(target),
        "--python-version",
        "3.11",
        "--python-platform",
        PYTHON_PLATFORM,
        "--only-binary",
        ":all:",
    ]


def install_third_party(wanted: Requirements, target: Path, scratch: Path, repo: Path) -> None:
    """Install the pinned wheels into `target` (`scratch`: a folder outside the layer)."""
    target.mkdir(parents=True, exist_ok=True)
    lines = [x for x in wanted.third_party.splitlines() if x.strip() and not x.startswith("#")]
    if not lines:
        return
    listed = scratch / "requirements.txt"
    listed.write_text(wanted.third_party)
    uv(*install_args(target), "--require-hashes", "-r", str(listed), cwd=repo)


def install_workspace(wanted: Requirements, target: Path, scratch: Path, repo: Path) -> None:
    """Build our packages' wheels in `scratch` and install them into `target`."""
    wheels = scratch / "wheels"
    for folder in wanted.workspace:
        uv("build", "--wheel", "--quiet", "--out-dir", str(wheels), str(repo / folder), cwd=repo)
    uv(*install_args(target), *sorted(str(w) for w in wheels.glob("*.whl")), cwd=repo)


def check_certificates(target: Path) -> None:
    """The base has no CA bundle: TLS (httpx, the Kubernetes client) relies on certifi's."""
    if not (target / "certifi" / "cacert.pem").is_file():
        raise ImageBuildError("certifi is not among the locked wheels: no CA bundle for TLS")


def tidy(target: Path) -> None:
    """Drop what names the build host, then precompile for a read-only root fs."""
    for script in (target / "bin").glob("*"):
        script.unlink()
    if (target / "bin").exists():
        (target / "bin").rmdir()
    for name in BUILD_RECORDS:
        for found in target.glob(f"*.dist-info/{name}"):
            found.unlink()
            record = found.parent / "RECORD"
            lines = record.read_text().splitlines(keepends=True)
            record.write_text("".join(x for x in lines if f".dist-info/{name}," not in x))
    pyc.compile_tree(target, SITE_PACKAGES)
