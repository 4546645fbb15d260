"""Unpacked image roots, one directory per manifest digest, shared by all containers of
that image (each container writes only to its own overlay layer above it).

A root is unpacked into a private temp directory and renamed into place when complete, so
a directory under its final name is always whole; a file lock per digest keeps two runners
(two sandboxes) from unpacking the same image at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tarfile
from pathlib import Path

from teeroute_sandbox.runner.inroot import UnsafePath
from teeroute_sandbox.runner.oci import ImageError, ImageStore, StoreImage, digest_hex
from teeroute_sandbox.runner.unpack import apply_layer


def ensure_rootfs(store: ImageStore, image: StoreImage, cache: Path) -> Path:
    """The unpacked root of `image`, unpacking it on first use."""
    final = cache / digest_hex(image.manifest_digest)
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o700)  # image files keep their owners: no other user reads them here
    with (cache / f"{final.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():  # another runner finished it while we waited
            return final
        for stale in cache.glob(f".unpacking-{final.name}-*"):  # a runner killed midway
            shutil.rmtree(stale, ignore_errors=True)
        staging = cache / f".unpacking-{final.name}-{os.getpid()}"
        staging.mkdir(mode=0o755)
        try:
            for layer in image.layers:
                apply_layer(store.blob_path(layer.digest), layer, staging)
        except (OSError, EOFError, tarfile.TarError, UnsafePath) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise ImageError(f"cannot unpack {image.ref}: {exc}") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(final)
    return final
