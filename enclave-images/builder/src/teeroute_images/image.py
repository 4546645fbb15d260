"""An image's config and manifest from its definition and layers (pure, deterministic).

The config's `created` and every history entry's are SOURCE_DATE_EPOCH, so an image's digest
depends on its layers and definition only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from teeroute_images import __version__
from teeroute_images.definitions import SOURCE_DATE_EPOCH, USER, ImageSpec
from teeroute_images.layout import CONFIG, MANIFEST, Obj
from teeroute_images.tarlayer import MEDIA_TYPE, Layer

CREATED = datetime.fromtimestamp(SOURCE_DATE_EPOCH, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def config(spec: ImageSpec, layers: list[tuple[str, Layer]]) -> Obj:
    """The OCI image config; `layers` are (what made it, the layer) in order."""
    return {
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": USER,
            "Entrypoint": list(spec.entrypoint),
            "Cmd": list(spec.cmd),
            "Env": [f"{name}={value}" for name, value in spec.environment],
            "WorkingDir": "/",
            "Labels": labels(spec),
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for _, layer in layers]},
        "history": [
            {"created": CREATED, "created_by": made_by, "comment": "teeroute-images"}
            for made_by, _ in layers
        ],
    }


def labels(spec: ImageSpec) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": f"teeroute {spec.name}",
        "org.opencontainers.image.description": spec.description,
        "org.opencontainers.image.version": __version__,
        "org.opencontainers.image.created": CREATED,
    }


def manifest(config_descriptor: Obj, layers: list[Layer], spec: ImageSpec) -> Obj:
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {**config_descriptor, "mediaType": CONFIG},
        "layers": [
            {"mediaType": MEDIA_TYPE, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
        "annotations": labels(spec),
    }
