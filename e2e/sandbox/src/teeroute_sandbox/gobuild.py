"""Builds the control-plane binaries from the Go module proxy and caches them by version.

Each wrapper module under `gobuild/` (kubernetes, etcd, kwok, helm) pins what it builds with a
go.mod and go.sum of ours. Binaries land in `<cache>/bin/<module>-<version>-<hash>/`, the
hash covering go.mod, go.sum, the Go version and the link flags, so any change rebuilds.
A build writes to a temporary directory and renames it into place: a cache entry is
complete or absent. A file lock keeps two builds of one entry from racing.

Called by `Sandbox.up()` (cluster.py) and by `teeroute sandbox build`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from teeroute_sandbox.errors import BuildFailed


@dataclass(frozen=True)
class GoModule:
    """One wrapper module and the binaries built from it."""

    dir_name: str
    main_requirement: str
    """The module whose version names the cache entry (e.g. k8s.io/kubernetes)."""
    binaries: dict[str, str]
    """binary name -> Go package path of its main package."""

    def ldflags(self, version: str) -> list[str]:
        flags = ["-s", "-w"]
        if self.dir_name == "kubernetes":
            major, minor = version.lstrip("v").split(".")[:2]
            base = "k8s.io/component-base/version"
            flags += [
                f"-X {base}.gitVersion={version}",
                f"-X {base}.gitMajor={major}",
                f"-X {base}.gitMinor={minor}",
                f"-X {base}.gitTreeState=clean",
            ]
        if self.dir_name == "helm":
            flags += _helm_ldflags(version)
        return flags


MODULES: tuple[GoModule, ...] = (
    GoModule(
        "kubernetes",
        "k8s.io/kubernetes",
        {
            name: f"k8s.io/kubernetes/cmd/{name}"
            for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
        },
    ),
    GoModule("etcd", "go.etcd.io/etcd/server/v3", {"etcd": "go.etcd.io/etcd/server/v3"}),
    GoModule("kwok", "sigs.k8s.io/kwok", {"kwok": "sigs.k8s.io/kwok/cmd/kwok"}),
    GoModule("helm", "helm.sh/helm/v3", {"helm": "helm.sh/helm/v3/cmd/helm"}),
)


def _helm_ldflags(version: str) -> list[str]:
    """What helm's Makefile links in: its version, and the Kubernetes version of the
    client-go it is built with (the default `.Capabilities.KubeVersion` of `helm template`
    and the API-deprecation baseline of `helm lint`)."""
    go_mod = (gobuild_root() / "helm" / "go.mod").read_text()
    kube_minor = required_version(go_mod, "k8s.io/client-go").split(".")[1]  # v0.N.x is 1.N
    internal = "helm.sh/helm/v3/internal/version"
    flags = [f"-X {internal}.version={version}", f"-X {internal}.gitTreeState=clean"]
    for package in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        flags += [f"-X {package}.k8sVersionMajor=1", f"-X {package}.k8sVersionMinor={kube_minor}"]
    return flags


Progress = Callable[[str], None]


def gobuild_root() -> Path:
    """The wrapper modules: inside the installed package, or beside it in the source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "gobuild", here.parents[1] / "gobuild"):
        if candidate.is_dir():
            return candidate
    raise BuildFailed(f"the Go wrapper modules are missing (looked in {here}/gobuild)")


def required_version(go_mod: str, module: str) -> str:
    """The version `go_mod` requires of `module` (single-line or block require)."""
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod, re.MULTILINE)
    if not match:
        raise BuildFailed(f"go.mod does not require {module}")
    return match.group(1)


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise BuildFailed("Go is needed to build the control plane: install it (go.dev) and retry")
    return go


def _go_version(go: str) -> str:
    return subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout


def cache_entry(cache_dir: Path, module: GoModule, go_version: str) -> tuple[Path, str]:
    """The cache directory for `module` as pinned now, and the version it builds."""
    src = gobuild_root() / module.dir_name
    go_mod = (src / "go.mod").read_text()
    version = required_version(go_mod, module.main_requirement)
    digest = hashlib.sha256()
    for part in (go_mod, (src / "go.sum").read_text(), go_version, *module.ldflags(version)):
        digest.update(part.encode())
    return cache_dir / "bin" / f"{module.dir_name}-{version}-{digest.hexdigest()[:12]}", version


def ensure_built(cache_dir: Path, progress: Progress | None = None) -> dict[str, Path]:
    """Paths of every control-plane binary, building those missing from the cache."""
    say = progress or _stderr
    go = _go()
    go_version = _go_version(go)
    paths: dict[str, Path] = {}
    for module in MODULES:
        entry, version = cache_entry(cache_dir, module, go_version)
        if not _complete(entry, module):
            _build_locked(go, module, version, entry, say)
        paths.update({name: entry / name for name in module.binaries})
    return paths


def _complete(entry: Path, module: GoModule) -> bool:
    return all(os.access(entry / name, os.X_OK) for name in module.binaries)


def _build_locked(go: str, module: GoModule, version: str, entry: Path, say: Progress) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    with (entry.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(entry, module):  # another process built it while we waited
            return
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        try:
            _run_go_build(go, module, version, staging, say)
            shutil.rmtree(entry, ignore_errors=True)
            staging.rename(entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _run_go_build(go: str, module: GoModule, version: str, out: Path, say: Progress) -> None:
    src = gobuild_root() / module.dir_name
    argv = [
        go,
        "build",
        "-v",
        "-mod=readonly",
        "-o",
        str(out) + "/",
        "-ldflags",
        " ".join(module.ldflags(version)),
        *module.binaries.values(),
    ]
    say(
        f"building {', '.join(module.binaries)} {version} from the Go module proxy "
        f"(a cold build takes many minutes; progress every 15 s)"
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=src,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "GOFLAGS": "-mod=readonly"},
    )
    tail = _follow(proc, module.dir_name, started, say)
    if proc.wait() != 0:
        raise BuildFailed(f"go build of {module.dir_name} failed:\n" + "\n".join(tail))
    for name, package in module.binaries.items():
        built = out / go_default_binary_name(package)
        if built.name != name:
            built.rename(out / name)
    say(f"built {module.dir_name} in {time.monotonic() - started:.0f} s")


def go_default_binary_name(package: str) -> str:
    """What `go build -o DIR/` names a main package: its last path element, skipping a
    major-version suffix (go.etcd.io/etcd/server/v3 -> "server")."""
    parts = package.split("/")
    if len(parts) > 1 and re.fullmatch(r"v\d+", parts[-1]):
        return parts[-2]
    return parts[-1]


def _follow(proc: subprocess.Popen[str], label: str, started: float, say: Progress) -> list[str]:
    """Count compiled packages and downloads; report every 15 s; keep the last lines."""
    if proc.stdout is None:
        return []
    compiled = downloaded = 0
    last_report = started
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-29:], line]
        if line.startswith("go: downloading"):
            downloaded += 1
        else:
            compiled += 1
        now = time.monotonic()
        if now - last_report >= 15:
            last_report = now
            say(
                f"[{label}] {now - started:4.0f} s: {compiled} packages compiled, "
                f"{downloaded} modules downloaded (now: {line.split()[-1]})"
            )
    return tail


def _stderr(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)
