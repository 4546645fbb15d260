"""The demo client: what a teeroute user sees, with the official `openai` SDK.

    python3 -m uv run --frozen python e2e/demo/client.py --base-url URL --api-key KEY \
        [--sealed-proxy URL] [--model M] [--prompt TEXT]

It sends one plain chat request to the gateway and, with --sealed-proxy, one through a running
`teeroute proxy` (sealed on this host to an enclave the proxy verified; the gateway and the
miner's host see only ciphertext). For each it prints the answer, the miner that served it, its
TEE, launch measurement and attestation age, the usage receipt's verdict and the cost.

Where each fact comes from (nothing is taken on the gateway's word alone where it can be
checked here):
- the miner: the gateway's `x-teeroute-endpoint` header (plain), the enclave key the proxy
  sealed to, `x-teeroute-hpke-key` (sealed);
- its TEE, measurement and attestation age: `GET /v1/attestations?model=M` (the evidence the
  operator verified), matched by endpoint key or attested HPKE key;
- the receipt and the cost: `GET /v1/generation?id=<x-request-id>` (the ledger's record). A
  wire v2 receipt is authenticated on the wire by MAC tags (the proxy checked its own, and the
  receipt against the request and answer bytes it saw); what a third party can check is its
  inclusion proof (`receipt_proof`): a Merkle root over the enclave's receipts, signed by its
  attested key. That proof is verified here (`teeroute.sealing.roots.verify_bundle`), and the
  receipt it proves must name this request, the serving enclave's attested keys and be the one
  the ledger holds. Roots come every few receipts or seconds, so the client waits for it.

Exit status: 0 when every request was answered and every receipt it carried verified; 1 when
not; 2 for bad arguments. Prompt and answer are printed, never logged elsewhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
import openai

from teeroute.sealing.errors import ReceiptInvalid, SealingError
from teeroute.sealing.receipt_mac import ReceiptV2, verify_bundle, verify_receipt_v2

RECORD_WAIT_S = 10.0
"""How long to wait for the ledger's record of an answer (it is written as the answer ends)."""
PROOF_WAIT_S = 45.0
"""How long to wait for a sealed answer's inclusion proof: the enclave signs a root every K
receipts or S seconds, and the gateway asks for overdue ones."""
NANO = 10**9


@dataclass(frozen=True)
class Served:
    """One answered request: what the SDK got back, and the headers that name the miner."""

    answer: str
    request_id: str
    endpoint: str
    hpke_key: str
    cost_header: str


def gateway_root(url: str) -> str:
    """The gateway's base URL without a trailing /v1 (accepts either)."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def ask(base_url: str, api_key: str, model: str, prompt: str, max_tokens: int) -> Served:
    client = openai.OpenAI(
        base_url=f"{gateway_root(base_url)}/v1", api_key=api_key, max_retries=0, timeout=60
    )
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens
    )
    completion = raw.parse()
    return Served(
        answer=completion.choices[0].message.content or "",
        request_id=raw.headers.get("x-request-id", ""),
        endpoint=raw.headers.get("x-teeroute-endpoint", ""),
        hpke_key=raw.headers.get("x-teeroute-hpke-key", ""),
        cost_header=raw.headers.get("x-teeroute-cost", ""),
    )


def first_model(base_url: str, api_key: str) -> str:
    client = openai.OpenAI(base_url=f"{gateway_root(base_url)}/v1", api_key=api_key)
    models = [m.id for m in client.models.list()]
    if not models:
        raise SystemExit("the gateway serves no model yet (are the miners attested?)")
    return models[0]


def evidence(http: httpx.Client, model: str) -> list[dict[str, Any]]:
    """The admitted endpoints of the model, with their verified evidence."""
    answer = http.get("/v1/attestations", params={"model": model})
    answer.raise_for_status()
    return list(answer.json()["data"])


def generation(
    http: httpx.Client, request_id: str, wait_s: float = RECORD_WAIT_S, proof: bool = False
) -> Any:
    """The ledger's record of one request (None if it never appeared); with `proof`, waiting
    up to PROOF_WAIT_S more for a record with a receipt to carry its inclusion proof."""
    deadline, proof_deadline = time.monotonic() + wait_s, None
    while True:
        answer = http.get("/v1/generation", params={"id": request_id})
        if answer.status_code == 200:
            record = answer.json()["data"]
            if not proof or record.get("receipt") is None or record.get("receipt_proof"):
                return record
            proof_deadline = proof_deadline or time.monotonic() + PROOF_WAIT_S
            if time.monotonic() > proof_deadline:
                return record
            time.sleep(0.5)
            continue
        if answer.status_code != 404 or time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def miner_of(served: Served, admitted: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The admitted endpoint that served the request: by its key, else by its sealing key."""
    for row in admitted:
        if served.endpoint and row["endpoint"] == served.endpoint:
            return row
        if served.hpke_key and row["hpke_key_sha256"] == served.hpke_key:
            return row
    return None


def receipt_verdict(
    record: Any, miner: dict[str, Any] | None, request_id: str, sealed: bool
) -> tuple[bool, str]:
    """(ok, what to print) for the record's receipt, proven here by its inclusion proof under
    a root signed by the miner's attested key. A plain request whose Route leaves the hop
    unsealed carries no receipt (the bill follows the engine's usage, capped by the gateway):
    printed, not a failure. A sealed request always carries one: without it, without its
    proof, or unproven, it fails."""
    if record is None:
        return False, "unknown: the gateway's ledger has no record of this request"
    receipt = record.get("receipt")
    if receipt is None:
        reason = record.get("bill_reason") or "usage"
        return not sealed, f"none: the hop was not sealed, so no signed usage (bill: {reason})"
    if miner is None:
        return False, "not checked: the serving enclave is not among the admitted ones"
    proof = record.get("receipt_proof")
    if not proof:
        status = record.get("receipt_status") or "-"
        return False, f"unproven: no signed root covers it yet (the gateway's verdict: {status})"
    try:
        checked = proven(receipt, proof, miner, request_id)
    except SealingError as exc:
        return False, f"INVALID ({exc})"
    return True, (
        "valid: signed by the enclave's attested key (a Merkle root over its receipts) for "
        f"this request ({checked.input_tokens} in + {checked.output_tokens} out tokens, "
        f"{checked.usage_source}; the gateway's verdict: {record.get('receipt_status') or '-'})"
    )


def proven(receipt: Any, proof: Any, miner: dict[str, Any], request_id: str) -> ReceiptV2:
    """The receipt the proof proves, if its root is signed by the key its receipt names, that
    is the miner's attested key, and it is the ledger's receipt for this request on this
    miner; ReceiptInvalid names the check that failed."""
    bundle = proof if isinstance(proof, str) else json.dumps(proof)
    checked = verify_bundle(bundle, None)  # the root's own key; compared just below
    verify_receipt_v2(checked, signing_key_sha256=miner["signing_key_sha256"])
    verify_receipt_v2(checked, request_id=request_id, hpke_key_sha256=miner["hpke_key_sha256"])
    held = receipt if isinstance(receipt, dict) else None
    if held is None or held != json.loads(checked.body):
        raise ReceiptInvalid("receipt.ledger", "the ledger's receipt is not the proven one")
    return checked


def age(attested_at: str | None, now: dt.datetime) -> str:
    if not attested_at:
        return "never (unattested)"
    when = dt.datetime.fromisoformat(attested_at.replace("Z", "+00:00"))
    return f"{max(0, int((now - when).total_seconds()))} s ago ({attested_at})"


def cost(record: Any, header: str) -> str:
    if record is None:
        return f"{header} (x-teeroute-cost header)" if header else "unknown"
    charged = int(record["charged_nano"]) / NANO
    reason = record.get("bill_reason") or "-"
    return f"{charged:.9f}".rstrip("0").rstrip(".") + f" (charged; bill: {reason})"


def report(title: str, served: Served, http: httpx.Client, model: str, sealed: bool) -> bool:
    """Print one request's facts; True if they all check out."""
    miner = miner_of(served, evidence(http, model))
    record = generation(http, served.request_id, proof=True) if served.request_id else None
    ok, verdict = receipt_verdict(record, miner, served.request_id, sealed)
    now = dt.datetime.now(dt.UTC)
    lines = [
        f"== {title}",
        f"answer:       {served.answer}",
        f"request:      {served.request_id or '-'}",
        f"miner:        {miner['endpoint'] if miner else 'unknown (not an admitted endpoint)'}",
        f"tee:          {miner['tee'] if miner else 'unknown'}",
        f"measurement:  {(miner['measurement'] or '-') if miner else 'unknown'}",
        f"attested:     {age(miner['attested_at'], now) if miner else 'unknown'}",
        f"receipt:      {verdict}",
        f"cost:         {cost(record, served.cost_header)}",
    ]
    print("\n".join(lines), flush=True)
    return ok and miner is not None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base-url", required=True, help="the gateway's URL (with or without /v1)")
    parser.add_argument(
        "--api-key", default=os.environ.get("TEEROUTE_API_KEY"), help="default: $TEEROUTE_API_KEY"
    )
    parser.add_argument("--sealed-proxy", help="a running `teeroute proxy`'s URL")
    parser.add_argument("--model", help="the public model (default: the first one served)")
    parser.add_argument("--prompt", default="In one sentence: why run inference in a TEE?")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("--api-key (or TEEROUTE_API_KEY) is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (openai.APIConnectionError, httpx.TransportError) as exc:
        print(f"demo client: cannot reach the gateway or proxy: {exc}", file=sys.stderr)
    except (openai.APIStatusError, httpx.HTTPStatusError) as exc:
        print(f"demo client: the request was refused: {exc}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    root = gateway_root(args.base_url)
    model = args.model or first_model(root, args.api_key)
    headers = {"Authorization": f"Bearer {args.api_key}"}
    with httpx.Client(base_url=root, headers=headers, timeout=30) as http:
        plain = ask(root, args.api_key, model, args.prompt, args.max_tokens)
        ok = report(f"plain request to {root} (model {model})", plain, http, model, False)
        if args.sealed_proxy:
            sealed = ask(args.sealed_proxy, args.api_key, model, args.prompt, args.max_tokens)
            title = f"sealed request through teeroute proxy at {gateway_root(args.sealed_proxy)}"
            ok = report(title, sealed, http, model, True) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
