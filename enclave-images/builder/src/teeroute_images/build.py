"""`teeroute images build`: each image's layers (cached by their inputs) into the store.

Layers, bottom up: `base` (shared by every image), `deps` (the image's third-party wheels),
`app` (our own wheels). A layer is rebuilt only when the hash of its inputs changes: the
builder's own code, the Debian lock, the exported requirements, our packages' sources.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from teeroute_images import app, base, cache, dpkg, image, layout
from teeroute_images.definitions import (
    BASE_PACKAGES,
    DEBIAN_MIRROR,
    DEBIAN_SUITE,
    PYTHON_PLATFORM,
    SITE_PACKAGES,
    SOURCE_DATE_EPOCH,
    ImageSpec,
)
from teeroute_images.progress import Progress, size
from teeroute_images.tarlayer import Layer, write_layer

BUILDER = Path(__file__).resolve().parent
CODE = {
    # The builder's modules each kind of layer depends on: editing one rebuilds those layers.
    "base": ("base.py", "dpkg.py", "pyc.py", "tarlayer.py"),
    "python": ("app.py", "pyc.py", "tarlayer.py"),
}
BASE_LOCK = "enclave-images/base/packages.lock"


@dataclass(frozen=True)
class Options:
    repo: Path
    store: Path
    cache: Path
    update_lock: bool = False


@dataclass(frozen=True)
class Built:
    ref: str
    digest: str
    size: int
    """Compressed size of the image's layers and config (what a pull moves)."""


def _cached(
    options: Options,
    what: str,
    inputs: Mapping[str, object],
    make: Callable[[Path], Layer],
    progress: Progress,
) -> Layer:
    """The layer for `inputs` from the cache, else made; `inputs["kind"]` names the builder
    modules that make it (CODE), whose sources are part of the key."""
    builder = cache.tree_digest([BUILDER / module for module in CODE[str(inputs["kind"])]])
    key = cache.key({**inputs, "builder": builder, "epoch": SOURCE_DATE_EPOCH})
    layer, hit = cache.LayerCache(options.cache / "layers").build(key, make)
    state = "cached" if hit else "built"
    progress.say(f"{what}: {state} {layer.digest[:19]} ({size(layer.size)})")
    return layer


def base_layer(options: Options, progress: Progress) -> Layer:
    lock = options.repo / BASE_LOCK
    locked = lock.read_text() if lock.exists() else ""

    def make(work: Path) -> Layer:
        progress.say(f"base: mmdebstrap {DEBIAN_SUITE} {' '.join(BASE_PACKAGES)}")
        resolved = base.build_rootfs(work / "rootfs")
        _check_lock(lock, locked, resolved, options.update_lock, progress)
        return write_layer(work / "rootfs", work / "layer.tar.gz", SOURCE_DATE_EPOCH, base.OWNERS)

    inputs = {
        "kind": "base",
        "packages": BASE_PACKAGES,
        "suite": DEBIAN_SUITE,
        "mirror": DEBIAN_MIRROR,
        "lock": locked,
    }
    return _cached(options, "base", inputs, make, progress)


def _check_lock(
    lock: Path, locked: str, resolved: list[dpkg.Package], update: bool, progress: Progress
) -> None:
    changed = dpkg.drift(dpkg.parse_lock(locked), resolved)
    if not changed:
        return
    if update or not locked:
        lock.write_text(dpkg.render_lock(resolved))
        progress.say(f"base: wrote {BASE_LOCK} ({len(resolved)} packages)")
        return
    progress.say(
        f"base: WARNING the mirror now serves other versions than {BASE_LOCK}; this image "
        "will not match one built from the lock (`teeroute images build --update-lock` "
        "records the new ones):"
    )
    for line in changed:
        progress.say(f"base:   {line}")


def deps_layer(
    spec: ImageSpec, wanted: app.Requirements, options: Options, progress: Progress
) -> Layer:
    def make(work: Path) -> Layer:
        target = work / "tree" / SITE_PACKAGES.lstrip("/")
        progress.say(f"{spec.name}: installing the locked third-party wheels")
        app.install_third_party(wanted, target, work, options.repo)
        app.check_certificates(target)
        app.tidy(target)
        return write_layer(work / "tree", work / "layer.tar.gz", SOURCE_DATE_EPOCH)

    inputs = {
        "kind": "python",
        "requirements": wanted.third_party,
        "platform": PYTHON_PLATFORM,
        "at": SITE_PACKAGES,
    }
    return _cached(options, f"{spec.name}: deps", inputs, make, progress)


def app_layer(
    spec: ImageSpec, wanted: app.Requirements, options: Options, progress: Progress
) -> Layer:
    def make(work: Path) -> Layer:
        target = work / "tree" / SITE_PACKAGES.lstrip("/")
        progress.say(f"{spec.name}: building {', '.join(wanted.workspace)}")
        app.install_workspace(wanted, target, work, options.repo)
        app.tidy(target)
        return write_layer(work / "tree", work / "layer.tar.gz", SOURCE_DATE_EPOCH)

    sources = [options.repo / folder for folder in wanted.workspace]
    inputs = {
        "kind": "python",
        "workspace": wanted.workspace,
        "sources": cache.tree_digest(sources),
        "at": SITE_PACKAGES,
    }
    return _cached(options, f"{spec.name}: app", inputs, make, progress)


def build_image(spec: ImageSpec, base_: Layer, options: Options, progress: Progress) -> Built:
    wanted = app.requirements(spec, options.repo)
    deps = deps_layer(spec, wanted, options, progress)
    ours = app_layer(spec, wanted, options, progress)
    made = [
        (f"base: {' '.join(BASE_PACKAGES)} ({DEBIAN_SUITE})", base_),
        (f"deps: locked wheels of {spec.package}", deps),
        (f"app: {' '.join(wanted.workspace)}", ours),
    ]
    layers = [layer for _, layer in made]
    config = layout.canonical(image.config(spec, made))
    manifest = image.manifest(layout.descriptor(config, layout.CONFIG), layers, spec)
    files = [(layer.path, layer.digest) for layer in layers]
    descriptor = layout.add_image(options.store, spec.ref, manifest, config, files)
    total = len(config) + sum(layer.size for layer in layers)
    progress.say(f"{spec.ref}: {descriptor['digest']} ({size(total)})")
    return Built(spec.ref, descriptor["digest"], total)


def build(specs: list[ImageSpec], options: Options, progress: Progress) -> list[Built]:
    base_ = base_layer(options, progress)
    return [build_image(spec, base_, options, progress) for spec in specs]
