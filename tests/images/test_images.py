"""The real images (slow tier): reproducible, valid OCI, and each entrypoint starts as
non-root on a read-only root fs."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
from pathlib import Path

import pytest

from teeroute.attestation.simulated import write_chip_dir
from teeroute_images import dpkg, export
from teeroute_images.build import BASE_LOCK, Built
from teeroute_images.definitions import DEFAULT_IMAGES, IMAGES, repository_root
from teeroute_sandbox.testing import wait_for
from tests.images import inimage
from tests.images.conftest import build_fresh

pytestmark = pytest.mark.images


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_two_builds_from_empty_caches_give_the_same_digests(
    built: tuple[Path, list[Built]], tmp_path: Path
) -> None:
    _, first = built
    _, second = build_fresh(tmp_path)
    assert [(b.ref, b.digest) for b in second] == [(b.ref, b.digest) for b in first]
    assert [b.ref for b in first] == [IMAGES[n].ref for n in DEFAULT_IMAGES]


def test_the_base_is_distroless_with_package_metadata(bundles: dict[str, Path]) -> None:
    rootfs = bundles["agent"] / "rootfs"
    locked = dpkg.parse_lock((repository_root() / BASE_LOCK).read_text())
    status = {p.name for p in (rootfs / "var/lib/dpkg/status.d").iterdir()}
    assert status == {p.name for p in locked}
    assert "Status: install ok installed" in (rootfs / "var/lib/dpkg/status.d/libc6").read_text()
    assert "nonroot:x:65532:65532:" in (rootfs / "etc/passwd").read_text()
    assert 'VERSION_ID="12"' in (rootfs / "etc/os-release").read_text()
    assert not (rootfs / "bin/sh").exists() and not (rootfs / "usr/bin/sh").exists()
    assert not (rootfs / "etc/hostname").exists()  # nothing of the build host
    assert (rootfs / "app/site-packages/certifi/cacert.pem").is_file()
    assert list((rootfs / "usr/lib/python3.11/__pycache__").glob("os.cpython-311.pyc"))


@pytest.mark.parametrize("name", DEFAULT_IMAGES)
def test_each_image_runs_as_the_non_root_user(
    name: str, bundles: dict[str, Path], tmp_path: Path
) -> None:
    config = inimage.image_config(bundles[name])
    assert config["process"]["user"] == {"uid": 65532, "gid": 65532}
    done = inimage.run(
        bundles[name],
        inimage.writable_tmp(tmp_path),
        ["/usr/bin/python3.11", "-c", "import os; print(os.getuid(), os.getgid())"],
    )
    assert (done.returncode, done.stdout) == (0, "65532 65532\n"), done.stderr


def test_the_root_fs_is_read_only(bundles: dict[str, Path], tmp_path: Path) -> None:
    script = "import pathlib; pathlib.Path('/app/x').write_text('x')"
    done = inimage.run(
        bundles["agent"], inimage.writable_tmp(tmp_path), ["/usr/bin/python3.11", "-c", script]
    )
    assert "Read-only file system" in done.stderr


@pytest.mark.parametrize("name", DEFAULT_IMAGES)
def test_every_import_of_the_entrypoint_comes_precompiled(
    name: str, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """On a read-only root fs nothing can cache bytecode: all of it must ship in the image."""
    module = inimage.image_config(bundles[name])["process"]["args"][2]
    script = (
        f"import importlib, importlib.util; importlib.import_module({module!r}); "
        f"importlib.util.find_spec('{module}.__main__') and "
        f"importlib.import_module('{module}.__main__')"
    )
    done = inimage.run(
        bundles[name], inimage.writable_tmp(tmp_path), ["/usr/bin/python3.11", "-v", "-c", script]
    )
    from_source = re.findall(r"# code object from '([^']*\.py)'", done.stderr)
    assert "code object from" in done.stderr
    assert from_source == []


def test_engine_sim_image_serves_the_openai_api(bundles: dict[str, Path], tmp_path: Path) -> None:
    port = free_port()
    proc = inimage.start(
        bundles["engine-sim"],
        inimage.writable_tmp(tmp_path),
        [*inimage.image_config(bundles["engine-sim"])["process"]["args"], "--port", str(port)],
    )
    try:
        wait_for(lambda: inimage.serving(proc, f"http://127.0.0.1:{port}/v1/models"), 60)
    finally:
        inimage.stop(proc)


def test_gateway_image_serves_from_a_config_file(bundles: dict[str, Path], tmp_path: Path) -> None:
    port = free_port()
    config = {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "GatewayConfig",
        "spec": {"ledger": "sqlite:////tmp/ledger.db"},
    }
    tmp = inimage.writable_tmp(tmp_path)
    (tmp / "gateway.yaml").write_text(json.dumps(config))
    args = inimage.image_config(bundles["gateway"])["process"]["args"]
    proc = inimage.start(
        bundles["gateway"],
        tmp,
        [*args, "--config", "/tmp/gateway.yaml", "--host", "127.0.0.1", "--port", str(port)],
    )
    try:
        wait_for(lambda: inimage.serving(proc, f"http://127.0.0.1:{port}/healthz"), 60)
    finally:
        inimage.stop(proc)


def test_agent_image_serves_evidence_from_a_simulated_tee(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    port = free_port()
    tmp = inimage.writable_tmp(tmp_path)
    write_chip_dir(tmp / "tee", "node-1", dt.datetime.now(dt.UTC))
    proc = inimage.start(
        bundles["agent"],
        tmp,
        None,
        {
            "TEEROUTE_SIMULATED_DIR": "/tmp/tee",
            "TEEROUTE_NODE_NAME": "node-1",
            "TEEROUTE_AGENT_PORT": str(port),
            "TEEROUTE_ENGINE_HEALTH": "false",
        },
    )
    try:
        wait_for(lambda: inimage.serving(proc, f"http://127.0.0.1:{port}/healthz"), 60)
    finally:
        inimage.stop(proc)


def test_operator_image_starts_and_reports_its_settings(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Without a cluster the operator cannot run; its entrypoint must still import kopf and
    its handlers and fail on its own, readable terms."""
    done = inimage.run(
        bundles["operator"],
        inimage.writable_tmp(tmp_path),
        None,
        {"TEEROUTE_OPERATOR_RELEASE_KEY_FILE": "/tmp/missing.pem"},
    )
    assert done.returncode == 1
    assert done.stderr.startswith("teeroute_operator:"), done.stderr


def test_the_dockerfiles_root_fs_step_gives_the_images_files(
    built: tuple[Path, list[Built]], bundles: dict[str, Path], tmp_path: Path
) -> None:
    """`teeroute images rootfs` (what each Dockerfile copies) unpacks the same files, owners
    and modes as umoci does from the image."""
    store, _ = built
    export.unpack(store, IMAGES["agent"].ref, tmp_path / "rootfs")
    assert tree(tmp_path / "rootfs") == tree(bundles["agent"] / "rootfs")


def tree(root: Path) -> dict[str, tuple[int, int, int]]:
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        size = 0 if path.is_dir() else info.st_size  # a directory's size is the file system's
        found[str(path.relative_to(root))] = (info.st_mode, info.st_uid, size)
    return found
