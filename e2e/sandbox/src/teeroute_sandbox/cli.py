"""`teeroute sandbox up|status|exec|restart|down|build|simulated-tee` — registered into the
`teeroute` CLI.

Scripts rely on these names and on `up` printing the admin kubeconfig's path on stdout
(progress goes to stderr).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from teeroute_sandbox import gobuild, netns
from teeroute_sandbox.cluster import COMPONENT_NAMES, Sandbox, Status
from teeroute_sandbox.errors import SandboxError
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.settings import SandboxSettings
from teeroute_sandbox.simtee import SimulatedVendor


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "sandbox", help="a local Kubernetes cluster with confidential node pools (no Docker)"
    )
    named = argparse.ArgumentParser(add_help=False)
    named.add_argument(
        "--name",
        default=SandboxSettings.name,
        help="sandbox instance, also its network namespace (default: %(default)s)",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text, parents=[named])
        sub.set_defaults(handler=handler)
        return sub

    action(
        "up",
        "build what is missing, start what is not running, print the admin kubeconfig path",
        _up,
    )
    action("status", "components (with memory), server version and nodes", _status).add_argument(
        "--json", action="store_true", help="machine-readable output"
    )
    action(
        "exec",
        "run a command inside the sandbox's network namespace with KUBECONFIG "
        "set: teeroute sandbox exec -- CMD …",
        _exec,
    ).add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD")
    restart = action(
        "restart",
        "stop one component (e.g. etcd, kube-apiserver) and start it again, as after a crash",
        _restart,
    )
    restart.add_argument("component", choices=COMPONENT_NAMES)
    restart.add_argument(
        "--grace",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds between SIGTERM and SIGKILL (default 0: a crash)",
    )
    action(
        "down",
        "stop every process of the sandbox and delete its namespaces and state (logs are kept)",
        _down,
    )
    action(
        "build", "build the control-plane binaries into the cache without starting anything", _build
    )
    simtee = action(
        "simulated-tee",
        "hand out the sandbox's simulated TEE: chip keys to miner namespaces (Secret "
        "teeroute-simulated-tee), its root to the operator (ConfigMap teeroute-system/"
        "teeroute-trust)",
        _simulated_tee,
    )
    simtee.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="a miner namespace to give the chips to (repeatable; created if missing)",
    )
    simtee.add_argument(
        "--chips-only",
        action="store_true",
        help="no trust ConfigMap: the root goes to an operator installed otherwise (the Helm "
        "chart's simulatedTee.rootPem takes the printed file)",
    )


def _sandbox(args: argparse.Namespace) -> Sandbox:
    return Sandbox(replace(SandboxSettings(), name=args.name))


def _up(args: argparse.Namespace) -> int:
    print(_sandbox(args).up())
    return 0


def _status(args: argparse.Namespace) -> int:
    status = _sandbox(args).status()
    print(json.dumps(_status_dict(status), indent=2) if args.json else _status_text(status))
    return 0 if status.healthy else 1


def _exec(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise SandboxError("nothing to run: teeroute sandbox exec -- CMD [ARG…]")
    return _sandbox(args).exec(argv)


def _restart(args: argparse.Namespace) -> int:
    _sandbox(args).restart(args.component, args.grace)
    return 0


def _down(args: argparse.Namespace) -> int:
    _sandbox(args).down()
    return 0


def _build(args: argparse.Namespace) -> int:
    for name, path in sorted(gobuild.ensure_built(SandboxSettings().cache_dir).items()):
        print(f"{name}\t{path}")
    return 0


def _simulated_tee(args: argparse.Namespace) -> int:
    sandbox = _sandbox(args)
    if not sandbox.status().healthy:
        raise SandboxError(f"sandbox {args.name} is not up: run `teeroute sandbox up` first")
    vendor = SimulatedVendor(sandbox.layout.root / "simulated-tee")
    netns.enter(sandbox.netns)  # the apiserver's address exists only inside
    kube = KubeRest(sandbox.kubeconfig)
    try:
        vendor.install(
            kube, args.namespace, create_namespaces=True, trust_configmap=not args.chips_only
        )
    finally:
        kube.close()
    print(vendor.trust_dir / "simulated-root.pem")
    return 0


def _status_dict(status: Status) -> dict[str, Any]:
    return {
        "name": status.name,
        "healthy": status.healthy,
        "serverVersion": status.server_version,
        "nodes": {"ready": status.nodes_ready, "total": status.nodes_total},
        "components": {
            c.name: {"pid": c.pid, "running": c.pid is not None, "rssBytes": c.rss_bytes}
            for c in status.components
        },
        "kubeconfig": str(status.kubeconfig),
    }


def _status_text(status: Status) -> str:
    lines = [f"sandbox {status.name}: {'up' if status.healthy else 'not healthy'}"]
    for c in status.components:
        state = (
            f"running (pid {c.pid}, {(c.rss_bytes or 0) / 2**20:.0f} MiB)" if c.pid else "stopped"
        )
        lines.append(f"  {c.name:<24} {state}")
    lines.append(f"  server version           {status.server_version or '-'}")
    lines.append(f"  nodes ready              {status.nodes_ready}/{status.nodes_total}")
    lines.append(f"  kubeconfig               {status.kubeconfig}")
    return "\n".join(lines)
