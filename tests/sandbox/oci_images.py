"""Small real OCI images for the runner's tests, built with umoci on a Debian root made by
`mmdebstrap --variant=extract` (python3.11-minimal; cached, ~5 s the first time), and put
into an OCI image store under their full reference, as `teeroute images build` does.

The image's program (`SERVE_PY`) serves HTTP on :8080 with the standard library's socket
module only (python3.11-minimal has no http.server) and reports, as `key=value` lines,
what the container sees: its user, its root, its env, what it may write.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from teeroute_sandbox import netns
from teeroute_sandbox.runner.oci import REF_ANNOTATIONS, ImageStore
from teeroute_sandbox.settings import default_cache_dir

ROOTFS_PACKAGES = "python3.11-minimal,base-files"
MIRROR = "http://deb.debian.org/debian"

SERVE_PY = r"""
import os
import socket
import sys


def writable(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "yes"
    except OSError as exc:
        return f"no ({exc.strerror})"


def report():
    facts = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": ",".join(str(g) for g in sorted(os.getgroups())),
        "cwd": os.getcwd(),
        "hostname": socket.gethostname(),
        "debian_version": os.path.exists("/etc/debian_version"),
        "host_path_visible": os.path.exists(os.environ.get("HOST_PATH", "/nonexistent")),
        "root_writable": writable("/var/tmp/written-by-container"),
        "scratch_writable": writable("/scratch/written-by-container"),
        "dev_null_writable": writable("/dev/null"),
        "greeting": os.environ.get("GREETING", ""),
        "image_only": os.environ.get("IMAGE_ONLY", ""),
        "hosts": open("/etc/hosts").read().strip().splitlines()[-1],
        "proc_self_is_me": os.readlink("/proc/self") == str(os.getpid()),
        "no_new_privs": [
            line.split()[1] for line in open("/proc/self/status") if line.startswith("NoNewPrivs")
        ][0],
    }
    return "".join(f"{k}={v}\n" for k, v in facts.items())


def serve(port):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(16)
    while True:
        conn, _ = server.accept()
        with conn:
            request = conn.recv(4096).decode(errors="replace").split(" ")
            path = request[1] if len(request) > 1 else "/"
            body = {"/healthz": "ok\n", "/report": None}.get(path, "")
            body = report() if body is None else body
            status = "200 OK" if body else "404 Not Found"
            head = f"HTTP/1.0 {status}\r\nContent-Length: {len(body)}\r\n\r\n"
            conn.sendall((head + body).encode())


if sys.argv[1:] == ["report"]:
    sys.stdout.write(report())
else:
    serve(int(os.environ.get("LISTEN_PORT", "8080")))
"""

ACCOUNTS = "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n"
GROUPS = "root:x:0:\nnonroot:x:65532:\n"


@dataclass(frozen=True)
class ImageRecipe:
    name: str
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    env: tuple[str, ...] = ()
    working_dir: str = "/"

    @property
    def ref(self) -> str:
        """Full reference; the tag is a hash of what goes in, so a change makes a new one."""
        digest = hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode())
        digest.update(ROOTFS_PACKAGES.encode())
        return f"teeroute.dev/runner-test-{self.name}:{digest.hexdigest()[:12]}"


SERVER_IMAGE = ImageRecipe(
    name="server",
    files={"/app/serve.py": (SERVE_PY, 0o755), "/etc/passwd": (ACCOUNTS, 0o644)}
    | {"/etc/group": (GROUPS, 0o644)},
    entrypoint=("/usr/bin/python3.11", "/app/serve.py"),
    cmd=(),
    user="nonroot:nonroot",  # by name: the runner looks it up in the image's own files
    env=(
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "GREETING=from-image",
        "IMAGE_ONLY=yes",
        "PYTHONDONTWRITEBYTECODE=1",
    ),
    working_dir="/app",
)


def cache_dir() -> Path:
    return default_cache_dir() / "test-images"


def python_rootfs() -> Path:
    """A tarball of a Debian bookworm root with python3.11-minimal (no /dev nodes)."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"bookworm-{ROOTFS_PACKAGES.replace(',', '+')}.tar"
    with (cache / "rootfs.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.exists():
            partial = tarball.with_suffix(".partial.tar")
            _debootstrap(partial)
            partial.rename(tarball)
    return tarball


def _debootstrap(into: Path, tries: int = 3) -> None:
    """mmdebstrap from the mirror, from the host's network namespace (a test that entered
    the sandbox's has no route out: on a fresh machine, where no rootfs was cached yet, that
    failed six tests), tried again after a failure; the last failure's stderr in the error."""
    argv = [
        "mmdebstrap",
        "--quiet",
        "--variant=extract",
        f"--include={ROOTFS_PACKAGES}",
        "--skip=output/dev",
        "bookworm",
        str(into),
        MIRROR,
    ]
    for attempt in range(1, tries + 1):
        with netns.outside():
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        if attempt < tries:
            time.sleep(5 * attempt)
    raise RuntimeError(
        f"mmdebstrap failed {tries} times (exit {done.returncode}): {done.stderr[-2000:]}"
    )


def ensure_image(image: ImageRecipe, store: Path) -> str:
    """Build `image` into `store` unless it is there already; return its reference."""
    if ImageStore(store).has(image.ref):
        return image.ref
    rootfs = python_rootfs()
    with tempfile.TemporaryDirectory(prefix="runner-test-image-") as tmp:
        layout, bundle = Path(tmp) / "layout", Path(tmp) / "bundle"
        _umoci("init", "--layout", str(layout))
        _umoci("new", "--image", f"{layout}:t")
        _umoci("unpack", "--image", f"{layout}:t", str(bundle))
        subprocess.run(["tar", "-xf", str(rootfs), "-C", str(bundle / "rootfs")], check=True)
        for path, (text, mode) in image.files.items():
            target = bundle / "rootfs" / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(mode)
        _umoci("repack", "--image", f"{layout}:t", str(bundle))
        _umoci("config", "--image", f"{layout}:t", *_config_flags(image))
        import_image(layout, "t", image.ref, store)
    return image.ref


def _config_flags(image: ImageRecipe) -> list[str]:
    flags = [f"--config.user={image.user}", f"--config.workingdir={image.working_dir}"]
    flags += [f"--config.entrypoint={e}" for e in image.entrypoint]
    flags += [f"--config.cmd={c}" for c in image.cmd]
    flags += [f"--config.env={e}" for e in image.env]
    return flags


def _umoci(*args: str) -> None:
    subprocess.run(["umoci", *args], check=True, capture_output=True)


def import_image(layout: Path, tag: str, ref: str, store: Path) -> None:
    """Copy one image of `layout` into `store`, named `ref` by both annotations."""
    index = json.loads((layout / "index.json").read_text())
    (descriptor,) = [
        m for m in index["manifests"] if m.get("annotations", {}).get(REF_ANNOTATIONS[0]) == tag
    ]
    blobs = store / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for blob in (layout / "blobs" / "sha256").iterdir():
        if not (blobs / blob.name).exists():
            shutil.copyfile(blob, blobs / f".{blob.name}.tmp")
            (blobs / f".{blob.name}.tmp").rename(blobs / blob.name)
    descriptor["annotations"] = dict.fromkeys(REF_ANNOTATIONS, ref)
    (store / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    with (store / ".index.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = store / "index.json"
        current = json.loads(path.read_text()) if path.exists() else {"schemaVersion": 2}
        kept = [
            m
            for m in current.get("manifests") or []
            if (m.get("annotations") or {}).get(REF_ANNOTATIONS[0]) != ref
        ]
        current["manifests"] = [*kept, descriptor]
        (store / "index.json.tmp").write_text(json.dumps(current, indent=2))
        (store / "index.json.tmp").rename(path)
