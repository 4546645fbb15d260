"""`python -m teeroute_sandbox.runner`: started by `teeroute sandbox up` in the namespace."""

import argparse
from pathlib import Path

from teeroute_sandbox.runner.main import main

parser = argparse.ArgumentParser(prog="teeroute_sandbox.runner")
parser.add_argument("--kubeconfig", type=Path, required=True)
parser.add_argument("--state-dir", type=Path, required=True)
parser.add_argument("--netns", required=True)
parser.add_argument("--image-store", type=Path, help="OCI image layout to run images from")
parser.add_argument("--rootfs-cache", type=Path, help="where unpacked image roots are kept")
args = parser.parse_args()
main(args.kubeconfig, args.state_dir, args.netns, args.image_store, args.rootfs_cache)
