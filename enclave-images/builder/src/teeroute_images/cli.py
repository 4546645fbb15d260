"""`teeroute images …`: build teeroute's OCI images and list what a store holds.

    teeroute images build [--out DIR] [--image NAME ...] [--all] [--cache DIR] [--update-lock]
    teeroute images list [--store DIR]
    teeroute images rootfs NAME DIR     one image's root fs as a directory (the Dockerfiles' step)

Without --image, `build` builds every image but the GPU miner (miner-vllm, about 9 GB of
wheels); `--all` includes it. Progress goes to stderr, one `<ref> <digest>` line per image to
stdout. Heavy imports happen inside the handlers so that `teeroute --help` stays quick.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    images = commands.add_parser("images", help="build teeroute's OCI images (no Docker needed)")
    sub = images.add_subparsers(dest="images_command", required=True, metavar="COMMAND")
    _add_build(sub)
    rootfs = sub.add_parser(
        "rootfs", help="build one image and write its root fs to a directory (for Dockerfiles)"
    )
    rootfs.add_argument("name", metavar="NAME")
    rootfs.add_argument("target", type=Path, metavar="DIR")
    rootfs.add_argument("--cache", type=Path, metavar="DIR", help="as for build")
    rootfs.set_defaults(handler=_rootfs)
    listing = sub.add_parser("list", help="the images an OCI layout holds, with digests")
    listing.add_argument("--store", type=Path, metavar="DIR", help="default: as for build --out")
    listing.set_defaults(handler=_list)


def _add_build(sub: Any) -> None:
    build = sub.add_parser("build", help="build images into an OCI layout (cached, reproducible)")
    build.add_argument(
        "--out", type=Path, metavar="DIR",
        help="the OCI layout (default $TEEROUTE_IMAGE_STORE or ~/.cache/teeroute/images/oci)",
    )  # fmt: skip
    build.add_argument(
        "--image", action="append", metavar="NAME", dest="names",
        help="an image to build; repeatable (default: all but miner-vllm)",
    )  # fmt: skip
    build.add_argument("--all", action="store_true", help="every image, miner-vllm included")
    build.add_argument(
        "--cache", type=Path, metavar="DIR",
        help="the layer cache (default ~/.cache/teeroute/images/cache)",
    )  # fmt: skip
    build.add_argument(
        "--update-lock", action="store_true",
        help="record the Debian versions the mirror serves now (enclave-images/base/packages.lock)",
    )  # fmt: skip
    build.set_defaults(handler=_build)


def _build(args: argparse.Namespace) -> int:
    from teeroute_images.build import Options, build
    from teeroute_images.definitions import repository_root
    from teeroute_images.progress import Progress
    from teeroute_images.selection import chosen
    from teeroute_images.store import default_cache, default_store

    options = Options(
        repo=repository_root(),
        store=(args.out or default_store()).resolve(),
        cache=(args.cache or default_cache()).resolve(),
        update_lock=args.update_lock,
    )
    for built in build(chosen(args.names, every=args.all), options, Progress()):
        print(built.ref, built.digest)
    return 0


def _rootfs(args: argparse.Namespace) -> int:
    import tempfile

    from teeroute_images.build import Options, build
    from teeroute_images.definitions import repository_root
    from teeroute_images.export import unpack
    from teeroute_images.progress import Progress
    from teeroute_images.selection import chosen
    from teeroute_images.store import default_cache

    with tempfile.TemporaryDirectory() as store:
        options = Options(
            repo=repository_root(),
            store=Path(store),
            cache=(args.cache or default_cache()).resolve(),
        )
        [built] = build(chosen([args.name]), options, Progress())
        unpack(options.store, built.ref, args.target)
    return 0


def _list(args: argparse.Namespace) -> int:
    from teeroute_images.layout import images
    from teeroute_images.progress import size
    from teeroute_images.store import default_store

    store = args.store or default_store()
    for ref, descriptor in sorted(images(store).items()):
        print(f"{ref}\t{descriptor['digest']}\t{size(_image_size(store, descriptor['digest']))}")
    return 0


def _image_size(store: Path, digest: str) -> int:
    from teeroute_images.layout import read_blob

    manifest = read_blob(store, digest)
    return int(manifest["config"]["size"]) + sum(int(x["size"]) for x in manifest["layers"])
