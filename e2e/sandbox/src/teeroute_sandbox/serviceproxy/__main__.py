"""`python -m teeroute_sandbox.serviceproxy`: started by `teeroute sandbox up` in the namespace."""

import argparse
from pathlib import Path

from teeroute_sandbox.serviceproxy.main import main

parser = argparse.ArgumentParser(prog="teeroute_sandbox.serviceproxy")
parser.add_argument("--kubeconfig", type=Path, required=True)
parser.add_argument("--kubernetes-ip", required=True)
args = parser.parse_args()
main(args.kubeconfig, args.kubernetes_ip)
