"""`teeroute proxy` and `teeroute attest`, registered into the `teeroute` CLI.

    teeroute proxy --gateway URL [--policy FILE] [--host 127.0.0.1] [--port 8787]
                   [--api-key-env TEEROUTE_API_KEY] [--allow-remote]
                   [--require-attested-gateway] [--one-shot] [--verbose]
    teeroute attest --gateway URL --model M [--policy FILE] [--api-key-env NAME] [--json]
                    [--verbose]
    teeroute attest --gateway URL --self [--policy FILE] [--json] [--verbose]

`attest` challenges the model's enclaves with a fresh nonce and prints which ones pass the
policy (exit 0 if at least one does, 5 if none). With `--self` it challenges the gateway itself
(`gateway_identity`): PASS (exit 0) only if its evidence passes the policy and binds our nonce
and the TLS key of our connection to it, else REFUSED (exit 5). Modules with the crypto and
HTTP are imported only when a command runs, so the rest of the CLI never depends on them.

`proxy --require-attested-gateway` makes that same check of the gateway before it listens
(REFUSED: exit 5, nothing started) and then talks to the gateway only over TLS pinned to the
certificate that passed: a server with another key, even at the same address, gets no request
(`gateway_unreachable`, naming the certificate).

`proxy` keeps one attested session per enclave it verified (wire v2: one handshake, then one
AEAD per request); `--one-shot` seals each request with its own handshake instead and keeps no
session (more public-key work per request, nothing held between requests).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import httpx

    from teeroute.client.attest import Attestation
    from teeroute.client.gateway_identity import GatewayVerdict
    from teeroute.client.policy import ClientPolicy

DEFAULT_PORT = 8787
DEFAULT_KEY_ENV = "TEEROUTE_API_KEY"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", required=True, help="the gateway's URL (with or without /v1)")
    parser.add_argument(
        "--policy",
        type=Path,
        help="client policy file (YAML or JSON: allowedTee, allowedMeasurements, minimumTcb, "
        "debugForbidden, maxEvidenceAge, trust: {simulatedRoot, tdxCollateral}); "
        "default: hardware TEEs only",
    )
    parser.add_argument(
        "--api-key-env",
        default=DEFAULT_KEY_ENV,
        metavar="NAME",
        help=f"environment variable holding the API key (default {DEFAULT_KEY_ENV})",
    )
    parser.add_argument("--verbose", action="store_true", help="more detail on stderr")


def register_proxy(commands: Any) -> None:
    parser = commands.add_parser(
        "proxy",
        help="a local OpenAI endpoint sealing every request to an enclave verified here",
    )
    _common(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free one)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding a non-loopback address (others could then use your key)",
    )
    parser.add_argument(
        "--require-attested-gateway",
        action="store_true",
        help="check the gateway's own attestation first (as attest --self, same policy) and "
        "send only over TLS pinned to the certificate it attested",
    )
    parser.add_argument(
        "--one-shot",
        action="store_true",
        help="seal each request with its own handshake (no session kept between requests)",
    )
    parser.set_defaults(handler=_proxy)


def register_attest(commands: Any) -> None:
    parser = commands.add_parser(
        "attest",
        help="challenge a model's enclaves through the gateway, or the gateway itself (--self), "
        "and verify them here",
    )
    _common(parser)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="the public model name")
    target.add_argument(
        "--self",
        dest="gateway_self",
        action="store_true",
        help="the gateway's own attestation: its code, and that TLS ends inside it (no API key)",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.set_defaults(handler=_attest)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _proxy(args: argparse.Namespace) -> int:
    from teeroute.attestation.cli import UsageError
    from teeroute.client.policy import load_policy
    from teeroute.client.proxy import ProxyServer
    from teeroute.client.session import SealedClient

    if not is_loopback(args.host) and not args.allow_remote:
        raise UsageError(
            f"--host {args.host} is not a loopback address: anyone reaching it could spend "
            "your key (pass --allow-remote to do it anyway)"
        )
    policy = load_policy(args.policy)
    key = os.environ.get(args.api_key_env) or None
    http, attested = None, ""
    if args.require_attested_gateway:
        pinned = _attested_gateway(args, policy)
        if pinned is None:
            return 5
        http, attested = pinned
    client = SealedClient(args.gateway, key, policy, http=http, one_shot=args.one_shot)
    try:
        server = ProxyServer((args.host, args.port), client, key, verbose=args.verbose)
    except OSError as exc:
        client.close()
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from exc
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{host}]" if ":" in host else host
    print(
        f"teeroute proxy: http://{shown}:{port}/v1 -> {client.gateway_url} "
        f"(sealed, {'one-shot' if args.one_shot else 'sessions'}; "
        f"policy: {policy.source}{attested})",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
        client.close()
    return 0


def _attested_gateway(
    args: argparse.Namespace, policy: ClientPolicy
) -> tuple[httpx.Client, str] | None:
    """The gateway's own attestation, checked before anything listens or is sent, and an HTTP
    client pinned to the certificate it attested, with a note for the start line. None (after
    printing why) when the gateway was refused."""
    import httpx

    from teeroute.client.gateway_identity import attest_gateway, pinned_tls
    from teeroute.client.session import DEFAULT_TIMEOUT

    verdict = attest_gateway(args.gateway, policy)
    if not verdict.ok or args.verbose:
        print_gateway_verdict(verdict, sys.stderr)
    if not verdict.ok:
        print(
            f"teeroute proxy: the gateway did not pass the policy ({policy.source}); not started",
            file=sys.stderr,
        )
        return None
    note = f"; gateway attested, {verdict.tee}, TLS key {verdict.tls_spki_sha256[:16]}… pinned"
    return httpx.Client(timeout=DEFAULT_TIMEOUT, verify=pinned_tls(verdict)), note


def _attest(args: argparse.Namespace) -> int:
    if args.gateway_self:
        return _attest_gateway(args)
    from teeroute.client.policy import load_policy
    from teeroute.client.session import SealedClient

    policy = load_policy(args.policy)
    client = SealedClient(args.gateway, os.environ.get(args.api_key_env) or None, policy)
    try:
        outcome = client.attest(args.model)
    finally:
        client.close()
    if args.json:
        print(json.dumps(attestation_json(outcome), indent=2))
    else:
        print_attestation(outcome, args.verbose)
    if not outcome.verified:
        print(f"no enclave of {args.model} passed the policy ({policy.source})", file=sys.stderr)
        return 5
    return 0


def _attest_gateway(args: argparse.Namespace) -> int:
    from teeroute.client.gateway_identity import attest_gateway
    from teeroute.client.policy import load_policy

    policy = load_policy(args.policy)
    verdict = attest_gateway(args.gateway, policy)
    if args.json:
        print(json.dumps(verdict.to_json(), indent=2))
    else:
        print_gateway_verdict(verdict)
    if not verdict.ok:
        print(f"the gateway did not pass the policy ({policy.source})", file=sys.stderr)
        return 5
    return 0


def print_gateway_verdict(verdict: GatewayVerdict, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if verdict.ok:
        print(f"PASS      gateway {verdict.url}  {verdict.tee}", file=out)
    else:
        failed = ", ".join(verdict.failed)
        print(f"REFUSED   gateway {verdict.url}  {verdict.tee or '?'}: {failed}", file=out)
    print(f"    measurement {verdict.measurement or '?'}", file=out)
    print(f"    chip        {verdict.chip_id or '?'}", file=out)
    print(f"    tls key     {verdict.tls_spki_sha256 or '(no TLS)'}", file=out)
    for c in verdict.checks:
        print(f"    {_MARKS[c.status]} {c.name:<34} {c.detail}", file=out)


_MARKS = {"passed": "ok  ", "failed": "FAIL", "not_checked": "--  "}


def attestation_json(outcome: Attestation) -> dict[str, Any]:
    def checks(items: Any) -> list[dict[str, str]]:
        return [{"name": c.name, "status": c.status, "detail": c.detail} for c in items]

    return {
        "model": outcome.model,
        "at": outcome.at.isoformat(),
        "verified": [
            {
                "pool": v.pool,
                "endpoint_id": v.endpoint_id,
                "tee": v.tee,
                "measurement": v.measurement,
                "chip_id": v.chip_id,
                "hpke_key_sha256": v.hpke_key_sha256,
                "signing_key_sha256": v.signing_key_sha256,
                "checks": checks(v.checks),
            }
            for v in outcome.verified
        ],
        "refused": [
            {
                "pool": r.pool,
                "endpoint_id": r.endpoint_id,
                "tee": r.tee,
                "failed": list(r.failed),
                "checks": checks(r.checks),
            }
            for r in outcome.refused
        ],
    }


def print_attestation(outcome: Attestation, verbose: bool) -> None:
    marks = {"passed": "ok  ", "failed": "FAIL", "not_checked": "--  "}
    print(f"{outcome.model}: {len(outcome.verified)} verified, {len(outcome.refused)} refused")
    for v in outcome.verified:
        print(f"verified  {v.endpoint_id}  {v.tee}  pool {v.pool}")
        print(f"    measurement {v.measurement}")
        print(f"    chip        {v.chip_id}")
        print(f"    hpke key    {v.hpke_key_sha256}")
        print(f"    signing key {v.signing_key_sha256}")
        if verbose:
            for c in v.checks:
                print(f"    {marks[c.status]} {c.name:<34} {c.detail}")
    for r in outcome.refused:
        print(f"REFUSED   {r.endpoint_id}  {r.tee or '?'}  pool {r.pool or '?'}: {r.reason}")
        for c in r.checks:
            if verbose or c.status == "failed":
                print(f"    {marks[c.status]} {c.name:<34} {c.detail}")
