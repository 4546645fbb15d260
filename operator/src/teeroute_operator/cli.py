"""`teeroute operator …`, registered into the `teeroute` CLI.

    teeroute operator release-key --out FILE    a new release key (Ed25519, PKCS#8 PEM, mode
                                                0600; never over an existing file); prints
                                                its public half, as agents and gateways
                                                pin it
    teeroute operator release-key --show FILE   print the public half of an existing key

The operator reads the file named by TEEROUTE_OPERATOR_RELEASE_KEY_FILE: the key signs every
secret release and every admission record. Remote miners set the printed value as
TEEROUTE_AGENT_RELEASE_KEY on their agents (the operator sets it on the pods it runs); gateways
pin it as TEEROUTE_GATEWAY_OPERATOR_KEY. Heavy imports happen inside the handler, so
`teeroute --help` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    operator = commands.add_parser("operator", help="the Kubernetes operator's own files")
    sub = operator.add_subparsers(dest="operator_command", required=True, metavar="COMMAND")
    key = sub.add_parser(
        "release-key",
        help="the key that signs secret releases (TEEROUTE_OPERATOR_RELEASE_KEY_FILE)",
    )
    which = key.add_mutually_exclusive_group(required=True)
    which.add_argument("--out", type=Path, metavar="FILE", help="write a new key to FILE")
    which.add_argument("--show", type=Path, metavar="FILE", help="the public key of FILE")
    key.set_defaults(handler=_release_key)


def _release_key(args: argparse.Namespace) -> int:
    from teeroute_operator import release_key
    from teeroute_operator.builders import RELEASE_KEY_ENV

    if args.out is not None:
        public = release_key.create(args.out)
        print(f"wrote a new release key to {args.out}", file=sys.stderr)
    else:
        public = release_key.load(args.show).public
    public_b64 = release_key.public_b64(public)
    print(f"{RELEASE_KEY_ENV}={public_b64}")
    print(f"TEEROUTE_GATEWAY_OPERATOR_KEY={public_b64}")
    return 0
