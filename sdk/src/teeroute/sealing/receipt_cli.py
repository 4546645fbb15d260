"""`teeroute verify receipt --proof FILE`: check a v2 receipt's proof bundle offline.

The bundle is what the gateway's ledger stores per sealed request (GET it from the ledger or
the gateway's operator): the receipt, the enclave's signed Merkle root and the audit path.
With --signing-key-sha256 (the fingerprint an attestation verdict vouched for, e.g. from
`teeroute attest`) the root must be signed by that key; without it the key is the root's own
and the summary says it was not compared. Exit 0 with a one-line summary when every check
passed; 1 naming the failed check; 2 when the file cannot be read.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from teeroute.errors import TeerouteError
from teeroute.sealing.errors import ReceiptInvalid
from teeroute.sealing.receipt_body import ReceiptV2
from teeroute.sealing.roots import MAX_BUNDLE, SignedRoot, verify_bundle_root

_SHA256 = re.compile(r"[0-9a-f]{64}")


class UsageError(TeerouteError):
    exit_code = 2


def add_receipt_command(kinds: Any) -> None:
    """Adds `receipt` to the `teeroute verify` kinds (attestation/cli.py registers verify)."""
    parser = kinds.add_parser(
        "receipt", help="a v2 usage receipt's proof bundle (offline: no network)"
    )
    parser.add_argument(
        "--proof", type=Path, required=True, help="the proof bundle (JSON) the ledger stored"
    )
    parser.add_argument(
        "--signing-key-sha256",
        type=_sha256,
        help="the attested Ed25519 signing key's SHA-256 (hex); without it: not compared",
    )
    parser.set_defaults(handler=_verify_receipt)


def _sha256(text: str) -> str:
    value = text.strip().lower()
    if not _SHA256.fullmatch(value):
        raise argparse.ArgumentTypeError("expected 64 hex digits")
    return value


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BUNDLE + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    return data


def _verify_receipt(args: argparse.Namespace) -> int:
    try:
        receipt, root = verify_bundle_root(_read(args.proof), args.signing_key_sha256)
    except ReceiptInvalid as failed:
        print(f"receipt: REJECTED ({failed.check}: {failed.detail})", file=sys.stderr)
        return 1
    print(summary(receipt, root, attested=args.signing_key_sha256 is not None))
    return 0


def summary(receipt: ReceiptV2, root: SignedRoot, *, attested: bool) -> str:
    key = (
        f"the attested key {root.signing_key_sha256}"
        if attested
        else f"key {root.signing_key_sha256} (NOT compared with an attestation)"
    )
    last = root.first_index + root.count - 1
    return (
        f"receipt: verified: request {receipt.request_id} model {receipt.served_model} "
        f"{receipt.input_tokens} in / {receipt.output_tokens} out tokens "
        f"(status {receipt.status}, complete {str(receipt.complete).lower()}) "
        f"is #{receipt.index} of session {receipt.session_id}, in the root over "
        f"#{root.first_index}..#{last} signed at {root.signed_at} by {key}"
    )
