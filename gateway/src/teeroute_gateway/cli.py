"""`teeroute gateway …` and `teeroute keys …` (scripts rely on these names and flags).

    teeroute gateway serve [--config FILE] [--host H] [--port P] [--workers N]
    teeroute gateway settlement --config FILE [--from DATE] [--to DATE]
    teeroute gateway gateway-key --out FILE a new gateway key (Ed25519, PKCS#8 PEM, mode 0600)
                                            for `gatewayKeyFile`; prints what agents pin
    teeroute gateway gateway-key --show FILE the public half of an existing one
    teeroute keys create --credit AMOUNT [--config FILE] [--name NAME]
                         [--spend-limit AMOUNT --period day|month]
    teeroute keys admin                     a new admin key (stdout) and its hash (stderr)

Without --config, `serve` watches the cluster of the current kubeconfig. Heavy imports
happen inside the handlers so that `teeroute --help` stays quick.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    gateway = commands.add_parser("gateway", help="the OpenAI-compatible routing gateway")
    sub = gateway.add_subparsers(dest="gateway_command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve the API (from a config file or the cluster)")
    serve.add_argument(
        "--config", metavar="FILE", help="GatewayConfig + MinerPools + Routes (YAML)"
    )
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port to listen on (default 8080)")
    serve.add_argument("--workers", type=int, default=None, help="server processes (default 1)")
    serve.set_defaults(handler=_serve)
    settle = sub.add_parser("settlement", help="usage and amounts per pool for a period (JSON)")
    settle.add_argument("--config", metavar="FILE", required=True)
    settle.add_argument(
        "--from", dest="start", metavar="DATE", help="RFC 3339 or YYYY-MM-DD (default: 30 days ago)"
    )
    settle.add_argument("--to", dest="end", metavar="DATE", help="exclusive end (default: now)")
    settle.set_defaults(handler=_settlement)
    key = sub.add_parser(
        "gateway-key", help="the key that authorizes the gateway's requests to enclave agents"
    )
    which = key.add_mutually_exclusive_group(required=True)
    which.add_argument("--out", type=Path, metavar="FILE", help="write a new key (0600)")
    which.add_argument(
        "--show", type=Path, metavar="FILE", help="show an existing key's public half"
    )
    key.set_defaults(handler=_gateway_key)

    keys = commands.add_parser("keys", help="API keys and their prepaid credit")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = ksub.add_parser(
        "create", help="create an API key with prepaid credit; prints the key once"
    )
    create.add_argument(
        "--credit", required=True, metavar="AMOUNT", help="prepaid credit, e.g. 10 or 0.50"
    )
    create.add_argument("--config", metavar="FILE", help="the gateway config whose ledger to use")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument(
        "--spend-limit", metavar="AMOUNT", help="at most this much spent per period"
    )
    create.add_argument("--period", choices=["day", "month"], help="the spend limit's period")
    create.set_defaults(handler=_keys_create)
    admin = ksub.add_parser("admin", help="a new admin key for /v1/miners and /v1/settlement")
    admin.set_defaults(handler=_keys_admin)


def _serve(args: argparse.Namespace) -> int:
    from teeroute_gateway.server import serve

    return serve(args.config, host=args.host, port=args.port, workers=args.workers)


def _keys_create(args: argparse.Namespace) -> int:
    from teeroute_gateway.keys_cli import create_key

    return create_key(args.config, args.credit, args.name, args.spend_limit, args.period)


def _keys_admin(args: argparse.Namespace) -> int:
    from teeroute_gateway.keys_cli import admin_key

    return admin_key()


def _gateway_key(args: argparse.Namespace) -> int:
    from teeroute_gateway.keys_cli import gateway_key

    return gateway_key(args.out, args.show)


def _settlement(args: argparse.Namespace) -> int:
    from teeroute_gateway.keys_cli import settlement

    return settlement(args.config, args.start, args.end)
