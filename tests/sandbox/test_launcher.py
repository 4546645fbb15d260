"""The launcher becomes a real container (real mounts in a private namespace, real
credentials), without a cluster: a host command kept visible under a volume that hides
it, and an image from an OCI store run from its own root. Needs root (as the sandbox)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from teeroute_sandbox.runner import etcfiles
from teeroute_sandbox.runner.images import ImageMap, store_image_config
from teeroute_sandbox.runner.oci import ImageStore
from teeroute_sandbox.runner.plan import LaunchPlan, Lookups, Mount, build_plan

from . import oci_images

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")
CHECKOUT = Path(__file__).resolve().parents[2]


def launch(plan: LaunchPlan, where: Path) -> subprocess.CompletedProcess[str]:
    where.mkdir(exist_ok=True)
    plan_file = where / "c.plan.json"
    plan_file.write_text(json.dumps(plan.to_json()))
    return subprocess.run(
        [sys.executable, "-m", "teeroute_sandbox.runner.launcher", str(plan_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def facts(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.fixture
def under_tmp() -> Iterator[Path]:
    """A directory directly in /tmp, where a fresh clone would be."""
    path = Path(tempfile.mkdtemp(prefix="tr-launcher-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def test_host_command_in_tmp_runs_under_an_emptydir_mounted_at_tmp(under_tmp: Path) -> None:
    """The /tmp clone bug: a pod with an emptyDir at /tmp hid the checkout's interpreter."""
    venv = under_tmp / "checkout" / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    app = under_tmp / "checkout" / "app.py"
    app.write_text(
        "import os, sys\n"
        "open('/tmp/from-container', 'w').write('hi')\n"
        "print(f'uid={os.getuid()}')\n"
        "print(f'prefix={sys.prefix}')\n"
    )
    empty_dir = under_tmp / "pod-volumes" / "tmp"
    empty_dir.mkdir(parents=True)
    empty_dir.chmod(0o777)
    plan = LaunchPlan(
        argv=[str(venv / "bin" / "python"), str(app)],
        env={"PATH": "/usr/bin:/bin"},
        mounts=[Mount(str(empty_dir), "/tmp", read_only=False)],
        uid=65532,
        gid=65532,
        groups=[],
        working_dir="/",
        hostname="tmp-pod",
        read_only_root=True,
        reveal=[str(venv), str(app.parent), sys.base_prefix],
    )
    done = launch(plan, under_tmp)
    assert done.returncode == 0, done.stderr
    assert facts(done.stdout) == {"uid": "65532", "prefix": str(venv)}
    assert (empty_dir / "from-container").read_text() == "hi"  # /tmp was the emptyDir


def test_hidden_paths_are_kept_visible_only_under_a_strict_ancestor() -> None:
    from teeroute_sandbox.runner.launcher import hidden_paths

    keep = ["/tmp/c/.venv", "/tmp/c/src", "/tmp/c", "/usr/lib/python3.11", "/data"]
    assert hidden_paths(keep, ["/tmp", "/data"]) == ["/tmp/c"]
    assert hidden_paths(keep, ["/tmp/c/src"]) == []
    assert hidden_paths(keep, ["/usr"]) == ["/usr/lib/python3.11"]


# -- image mode ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageMap, str]:
    path = tmp_path_factory.mktemp("store")
    ref = oci_images.ensure_image(oci_images.SERVER_IMAGE, path)
    images = ImageMap(path / "images.json", ImageStore(path), path / "rootfs")
    return images, ref


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "imgpod", "namespace": "ns", "uid": "u1"},
        "spec": {"nodeName": "n", **spec},
        "status": {"podIP": "10.244.9.9"},
    }


def image_plan(
    images: ImageMap, ref: str, work: Path, read_only: bool, **container: Any
) -> LaunchPlan:
    found = images.lookup(ref)
    assert found is not None and found.store is not None
    root = images.unpacked(found.store)
    the_pod = pod()
    scratch = work / "scratch"
    scratch.mkdir(mode=0o777, exist_ok=True)
    scratch.chmod(0o777)
    hosts = work / "hosts"
    hosts.write_text(etcfiles.hosts_file(the_pod))
    spec = {
        "name": "c",
        "image": ref,
        "env": [
            {"name": "GREETING", "value": "from-pod"},
            {"name": "HOST_PATH", "value": str(CHECKOUT)},
        ],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        "securityContext": {"readOnlyRootFilesystem": read_only},
        **container,
    }
    plan = build_plan(
        the_pod,
        spec,
        store_image_config(found.store, root),
        Lookups(volume_dirs={"scratch": str(scratch)}),
    )
    return replace(
        plan,
        rootfs=str(root),
        container_dir=str(work / "container"),
        etc_mounts=[Mount(str(hosts), "/etc/hosts", read_only=False)],
    )


@pytest.mark.parametrize("read_only", [True, False])
def test_image_runs_from_its_own_root_as_its_user(
    store: tuple[ImageMap, str], tmp_path: Path, read_only: bool
) -> None:
    images, ref = store
    plan = image_plan(images, ref, tmp_path, read_only, args=["report"])
    done = launch(plan, tmp_path)
    assert done.returncode == 0, done.stderr
    seen = facts(done.stdout)
    assert (seen["uid"], seen["gid"]) == ("65532", "65532")  # the image's user, by name
    assert seen["debian_version"] == "True"  # the image's root ...
    assert seen["host_path_visible"] == "False"  # ... not the host's
    assert seen["cwd"] == "/app"  # the image's WorkingDir
    assert (seen["greeting"], seen["image_only"]) == ("from-pod", "yes")
    assert seen["hostname"] == "imgpod"
    assert seen["hosts"] == "10.244.9.9\timgpod"
    assert seen["scratch_writable"] == "yes"
    assert seen["dev_null_writable"] == "yes"
    assert seen["proc_self_is_me"] == "True"
    if read_only:
        assert seen["root_writable"] == "no (Read-only file system)"
    else:  # writable, but into the container's own layer, never the shared image root
        assert seen["root_writable"] == "yes"
        assert (tmp_path / "container" / "upper" / "var" / "tmp" / "written-by-container").exists()
        assert not (Path(plan.rootfs) / "var" / "tmp" / "written-by-container").exists()
    assert (tmp_path / "scratch" / "written-by-container").exists()


def test_pod_command_replaces_the_image_entrypoint_inside_the_image(
    store: tuple[ImageMap, str], tmp_path: Path
) -> None:
    images, ref = store
    plan = image_plan(
        images,
        ref,
        tmp_path,
        True,
        command=["/usr/bin/python3.11", "-c", "import os; print(f'uid={os.getuid()}')"],
        securityContext={"runAsUser": 4242, "runAsGroup": 4343},
    )
    done = launch(plan, tmp_path)
    assert done.returncode == 0, done.stderr
    assert facts(done.stdout) == {"uid": "4242"}
    assert (plan.uid, plan.gid) == (4242, 4343)


def test_missing_command_in_the_image_exits_127(
    store: tuple[ImageMap, str], tmp_path: Path
) -> None:
    images, ref = store
    plan = image_plan(images, ref, tmp_path, True, command=[sys.executable, "-c", "print(1)"])
    done = launch(plan, tmp_path)  # the host's interpreter is not in the image
    assert done.returncode == 127, done.stderr
    assert "cannot run" in done.stderr


def test_exec_joins_the_running_containers_mounts_and_user(under_tmp: Path) -> None:
    volume = under_tmp / "volume"
    volume.mkdir(mode=0o777)
    volume.chmod(0o777)
    container = LaunchPlan(
        argv=[
            sys.executable,
            "-c",
            "import time; open('/tmp/marker', 'w').write('x'); time.sleep(60)",
        ],
        env={"PATH": "/usr/bin:/bin"},
        mounts=[Mount(str(volume), "/tmp", read_only=False)],
        uid=65532,
        gid=65532,
        groups=[],
        working_dir="/",
        hostname="joined",
        read_only_root=True,
        reveal=[sys.prefix, sys.base_prefix],
    )
    plan_file = under_tmp / "c.plan.json"
    plan_file.write_text(json.dumps(container.to_json()))
    running = subprocess.Popen(
        [sys.executable, "-m", "teeroute_sandbox.runner.launcher", str(plan_file)]
    )
    try:
        check = (
            "import os, socket, sys; sys.exit(0 if os.path.exists('/tmp/marker') "
            "and socket.gethostname() == 'joined' and os.getuid() == 65532 else 1)"
        )
        probe = replace(container, argv=[sys.executable, "-c", check], join_pid=running.pid)
        deadline = time.monotonic() + 20
        while (done := launch(probe, under_tmp / "probe")).returncode != 0:
            assert time.monotonic() < deadline, done.stderr
            time.sleep(0.2)
        assert not Path("/tmp/marker").exists()  # it was the container's /tmp, not the host's
    finally:
        running.kill()
        running.wait()
