"""`teeroute verify snp|tdx|nvidia|evidence|receipt` — registered into the `teeroute` CLI.

Without --policy the evidence's authenticity is checked (parse, chain to the built-in vendor
roots, signatures, bindings) and its measured values printed; checks without a policy or
collateral say "not checked", never "passed". Exit 0 only when every performed check passed;
1 with the failed checks named otherwise; 3 when the evidence cannot be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from teeroute.attestation import evidence, nvidia, snp, tdx
from teeroute.attestation.policy import Policy
from teeroute.attestation.verdict import Verdict
from teeroute.errors import TeerouteError
from teeroute.sealing.receipt_cli import add_receipt_command


class UsageError(TeerouteError):
    exit_code = 2


def register(commands: Any) -> None:
    parser = commands.add_parser("verify", help="verify TEE attestation evidence or a receipt")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--policy",
        type=Path,
        help="policy file (YAML or JSON, the MinerPool attestation policy's keys)",
    )
    common.add_argument("--at", type=_time, help="judge as of this ISO-8601 time (default: now)")
    common.add_argument("--json", action="store_true", help="print the verdict as JSON")
    snp_cmd = kinds.add_parser("snp", parents=[common], help="an AMD SEV-SNP report")
    snp_cmd.add_argument("report", type=Path, help="raw report (1184 bytes)")
    snp_cmd.add_argument("--vcek", type=Path, required=True, help="VCEK or VLEK (DER or PEM)")
    snp_cmd.add_argument(
        "--chain", type=Path, help="ASK (or ASVK) then ARK, PEM; default: AMD's, built in"
    )
    snp_cmd.set_defaults(handler=_snp)
    tdx_cmd = kinds.add_parser("tdx", parents=[common], help="an Intel TDX quote (v4 or v5)")
    tdx_cmd.add_argument("quote", type=Path, help="raw quote")
    tdx_cmd.add_argument(
        "--collateral",
        type=Path,
        help="directory with Intel PCS collateral: tcbinfo-response.json, "
        "qeidentity-response.json, root-crl.der, pck-crl.der, tcb-signing-chain.pem (the "
        "PCS TCB-Info-Issuer-Chain); without all of them the verdict fails unless the policy "
        "says allowUncheckedCollateral: true",
    )
    tdx_cmd.set_defaults(handler=_tdx)
    gpu_cmd = kinds.add_parser("nvidia", parents=[common], help="NVIDIA Hopper GPU evidence")
    gpu_cmd.add_argument("report", type=Path, help="SPDM request+response, hex")
    gpu_cmd.add_argument(
        "--chain", type=Path, required=True, help="the GPU's certificate chain, leaf first (PEM)"
    )
    gpu_cmd.add_argument("--nonce", help="the nonce you sent, hex (else not checked)")
    gpu_cmd.set_defaults(handler=_nvidia)
    doc_cmd = kinds.add_parser(
        "evidence", parents=[common], help="an evidence document as the enclave agent returns it"
    )
    doc_cmd.add_argument("document", type=Path)
    doc_cmd.add_argument(
        "--simulated-root",
        type=Path,
        help="the simulated TEE's root CA (PEM), to verify simulated evidence",
    )
    doc_cmd.set_defaults(handler=_evidence)
    add_receipt_command(kinds)


def _time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _policy(args: argparse.Namespace) -> Policy | None:
    if args.policy is None:
        return None
    try:
        return Policy.from_mapping(yaml.safe_load(_read(args.policy)) or {})
    except (ValueError, TypeError, yaml.YAMLError) as exc:
        raise UsageError(f"policy {args.policy}: {exc}") from exc


def _snp(args: argparse.Namespace) -> int:
    cert = _read(args.vcek)
    if cert.startswith(b"-----BEGIN"):
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        cert = x509.load_pem_x509_certificate(cert).public_bytes(Encoding.DER)
    verdict = snp.verify(
        _read(args.report),
        cert,
        now=args.at or _now(),
        chain_pem=_read(args.chain) if args.chain else None,
        policy=_policy(args),
    )
    return _report(verdict, args.json)


def _collateral(directory: Path | None) -> tdx.Collateral | None:
    if directory is None:
        return None
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    return tdx.Collateral.from_directory(directory)


def _tdx(args: argparse.Namespace) -> int:
    verdict = tdx.verify(
        _read(args.quote),
        now=args.at or _now(),
        collateral=_collateral(args.collateral),
        policy=_policy(args),
    )
    return _report(verdict, args.json)


def _nvidia(args: argparse.Namespace) -> int:
    try:
        report = bytes.fromhex(_read(args.report).decode(errors="replace").strip())
        nonce = bytes.fromhex(args.nonce) if args.nonce else None
    except ValueError as exc:
        raise UsageError(f"not hex: {exc}") from exc
    if args.policy is not None:
        raise UsageError("GPU policies (golden measurements) are not supported yet")
    verdict = nvidia.verify(report, _read(args.chain), now=args.at or _now(), nonce=nonce)
    return _report(verdict, args.json)


def _evidence(args: argparse.Namespace) -> int:
    try:
        raw = json.loads(_read(args.document))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{args.document} is not JSON: {exc}") from exc
    doc = evidence.EvidenceDocument.parse(raw)
    trust = evidence.Trust(_read(args.simulated_root) if args.simulated_root else None)
    verdict = evidence.verify_document(
        doc, now=args.at or _now(), policy=_policy(args), trust=trust
    )
    return _report(verdict, args.json)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _report(verdict: Verdict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(verdict.to_json(), indent=2))
    else:
        marks = {"passed": "ok  ", "failed": "FAIL", "not_checked": "--  "}
        print(f"{verdict.tee}: {'verified' if verdict.ok else 'REJECTED'}")
        for check in verdict.checks:
            print(f"  {marks[check.status]} {check.name:<34} {check.detail}")
        for key, value in verdict.claims.items():
            print(f"  {key}: {value}")
    if not verdict.ok:
        print("failed: " + ", ".join(c.name for c in verdict.failed), file=sys.stderr)
        return 1
    return 0
