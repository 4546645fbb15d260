"""An image's root fs as a plain directory: its layers unpacked in order.

`teeroute images rootfs NAME DIR` uses it; the Dockerfiles copy that directory into a
`FROM scratch` image, so Docker users get the files this builder makes. Only our own layers
are unpacked here (no whiteouts, nothing outside DIR), so owners and modes are kept as they
are (/tmp's sticky bit, /home/nonroot's owner).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from teeroute_images import layout
from teeroute_images.errors import ImageBuildError


def unpack(store: Path, ref: str, target: Path) -> None:
    found = layout.images(store).get(ref)
    if found is None:
        raise ImageBuildError(f"{store} holds no image {ref}")
    target.mkdir(parents=True, exist_ok=True)
    manifest = layout.read_blob(store, found["digest"])
    for descriptor in manifest["layers"]:
        with tarfile.open(layout.blob_path(store, descriptor["digest"]), "r:gz") as tar:
            # Trusted: layers this builder wrote (Python < 3.11.4 has no filters at all).
            if hasattr(tarfile, "fully_trusted_filter"):
                tar.extractall(target, numeric_owner=True, filter="fully_trusted")  # noqa: S202
            else:
                tar.extractall(target, numeric_owner=True)  # noqa: S202
