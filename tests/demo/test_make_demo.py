"""The README's main command, as a new user runs it: `make demo` from a copy of the checkout
under /tmp (helm install of the kind preset, pools attested, a plain and a sealed request with
the openai SDK through the gateway's Service), then `make demo-down` removes it all.

The copy holds the working tree's files (tracked and untracked, not ignored), so what is
tested is what would be committed; it gets its own virtual environment from `scripts/setup`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from teeroute_sandbox import netns

pytestmark = pytest.mark.sandbox
ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_S = 900


@pytest.fixture
def checkout_under_tmp() -> Iterator[Path]:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    target = Path("/tmp") / f"teeroute-demo-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    archive = target.with_suffix(".tar")
    with tarfile.open(archive, "w") as tar:
        for name in filter(None, files):
            path = ROOT / name.decode()
            if path.exists():
                tar.add(path, arcname=name.decode(), recursive=False)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="tar")
    archive.unlink()
    try:
        yield target
    finally:
        shutil.rmtree(target, ignore_errors=True)


def run(checkout: Path, target: str, sandbox: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    venv = str(ROOT / ".venv")  # a new user's shell: no virtual environment of ours on PATH
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(venv)
    )
    env["TEEROUTE_DEMO_SANDBOX"] = sandbox
    with netns.outside():  # as a user's shell: PyPI and Debian reachable (setup may need them)
        return subprocess.run(
            ["make", target],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT_S,
        )


def container_processes(sandbox: str) -> dict[str, set[int]]:
    """The entry module of every process in the sandbox's pods, with the uids running it:
    each image's own entrypoint, started by the runner from the image (python3.11 of the
    image's root, not this checkout's)."""
    found: dict[str, set[int]] = {}
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in names.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(f"{sandbox}-pod-"):
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue  # gone meanwhile
            if argv[:2] != [b"/usr/bin/python3.11", b"-m"]:
                continue
            uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
            found.setdefault(argv[2].decode(), set()).add(uid)
    return found


def test_make_demo_from_a_checkout_under_tmp(checkout_under_tmp: Path) -> None:
    sandbox = f"tr-demo-{uuid.uuid4().hex[:4]}"
    try:
        demo = run(checkout_under_tmp, "demo", sandbox)
        assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
        out = demo.stdout
        assert "deployment.apps/teeroute-gateway    1/1" in out
        assert re.search(r"llama-sim: 3/3 attested", out)
        for mode in ("plain request", "sealed request through teeroute proxy"):
            section = out.split(f"== {mode}", 1)[1].split("==", 1)[0]
            assert re.search(r"^miner:\s+miners/llama-sim/llama-sim-", section, re.M), section
            assert re.search(r"^tee:\s+simulated$", section, re.M), section
            assert re.search(r"^receipt:\s+valid: signed by the enclave", section, re.M), section
            assert re.search(r"^cost:\s+0\.\d+ \(charged", section, re.M), section
        assert re.search(r"minerpool.teeroute.dev/llama-sim .* 3 +3 +3 ", out)
        assert container_processes(sandbox) == {
            "teeroute_operator": {65532},
            "teeroute.cli": {65532},  # the gateway's image runs `-m teeroute.cli gateway serve`
            "teeroute_enclave": {65532},
            "teeroute_engine_sim": {65532},
        }
    finally:
        down = run(checkout_under_tmp, "demo-down", sandbox)
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert sandbox not in netns
