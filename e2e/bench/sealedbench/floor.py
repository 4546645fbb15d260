"""How far the 0.9x target is: what sealing cannot do without, against what the target leaves.

`measure` times on this machine the cryptography every sealed request needs, however well the
code around it is written:
- public-key work, once per request, which the issue prescribes: X25519 for HPKE (when the
  gateway seals: its ephemeral key and one exchange; inside the enclave: one exchange), the
  enclave's Ed25519 signature on the receipt and the gateway's check of it;
- work per KiB of answer: AES-128-GCM on every frame (sealed by the enclave; opened by the
  gateway when it sealed the request) and SHA-256 over the frames for the receipt's
  `response_sha256` (enclave and gateway).

Everything else sealing adds (JSON, base64, HKDF, HTTP framing, the interpreter) is left out,
so a floor is a lower bound. `reach` (pure) sets each floor against its budget: the CPU plain
spends per request on that side, times 1/0.9 - 1. Two sides are judged: the gateway's own
capacity (its process) and the end-to-end rate (the core that limited plain's max-load run;
here the agent's, shared with the engine and wrk, so its floor is the agent's).
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealedbench.kinds import Kind
from sealedbench.stats import TARGET_RATIO

KIB = 1024
BULK = 64 * KIB  # per-KiB costs are timed on 64 KiB, about a long answer
RECEIPT_BYTES = 512  # about a signed receipt's canonical JSON
BATCH = 10  # operations per timed sample

OPS = (
    "x25519_keygen",
    "x25519_exchange",
    "ed25519_sign",
    "ed25519_verify",
    "aes128gcm_per_kib",
    "sha256_per_kib",
)


def _operations() -> dict[str, tuple[Callable[[], object], float]]:
    """Each timed operation and what one call counts for (1, or KiB for the bulk ones)."""
    mine, theirs = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    peer = theirs.public_key()
    signer = ed25519.Ed25519PrivateKey.generate()
    message = os.urandom(RECEIPT_BYTES)
    signature, public = signer.sign(message), signer.public_key()
    aead, nonce, bulk = AESGCM(os.urandom(16)), os.urandom(12), os.urandom(BULK)
    per = BULK / KIB
    return {
        "x25519_keygen": (lambda: x25519.X25519PrivateKey.generate().public_key(), 1),
        "x25519_exchange": (lambda: mine.exchange(peer), 1),
        "ed25519_sign": (lambda: signer.sign(message), 1),
        "ed25519_verify": (lambda: public.verify(signature, message), 1),
        "aes128gcm_per_kib": (lambda: aead.encrypt(nonce, bulk, None), per),
        "sha256_per_kib": (lambda: hashlib.sha256(bulk).digest(), per),
    }


def measure(samples: int) -> dict[str, float]:
    """Microseconds per operation (per KiB for the bulk ones): the median of `samples` timed
    batches of BATCH calls each."""
    found = {}
    for name, (call, units) in _operations().items():
        call()  # warm
        timed = []
        for _ in range(samples):
            start = time.perf_counter_ns()
            for _ in range(BATCH):
                call()
            timed.append((time.perf_counter_ns() - start) / BATCH / units / 1000)
        found[name] = round(statistics.median(timed), 3)
    return found


def floors(ops: dict[str, float], mode: str, answer_bytes: int) -> dict[str, dict[str, float]]:
    """Per side (`gateway`, `agent`): the public-key floor and the per-byte floor, in µs per
    request of `mode` whose answer is `answer_bytes` of plaintext."""
    kib = answer_bytes / KIB
    aead, sha = ops["aes128gcm_per_kib"] * kib, ops["sha256_per_kib"] * kib
    if mode == "gateway":  # the gateway seals, opens every frame and checks the receipt
        gateway = {
            "public_key": ops["x25519_keygen"] + ops["x25519_exchange"] + ops["ed25519_verify"],
            "per_byte": aead + sha,
        }
    else:  # frames pass unopened; the gateway hashes them and checks the receipt
        gateway = {"public_key": ops["ed25519_verify"], "per_byte": sha}
    agent = {"public_key": ops["x25519_exchange"] + ops["ed25519_sign"], "per_byte": aead + sha}
    return {"gateway": gateway, "agent": agent}


def budget_us(plain_ms_per_request: float) -> float:
    """What sealing may add per request and still keep TARGET_RATIO of plain's rate."""
    return plain_ms_per_request * 1000 * (1 / TARGET_RATIO - 1)


def verdict(budget: float, public_key: float, floor: float) -> str:
    if public_key > budget:
        return "out of reach: the public-key work alone is over the budget"
    if floor > budget:
        return "out of reach: the floor is over the budget"
    return f"within reach only if all else sealing adds stays under {budget - floor:.0f} µs"


def _load_core_ms(row: dict[str, Any]) -> float | None:
    cpu = row.get("cpu_ms_per_request") or {}
    parts = (cpu.get("agent"), cpu.get("engine"), row.get("load_core_rest_ms_per_request"))
    numbers = [float(p) for p in parts if isinstance(p, int | float)]
    return sum(numbers) if len(numbers) == len(parts) else None


def _side(budget: float, floor: dict[str, float], added_ms: float | None) -> dict[str, Any]:
    total = floor["public_key"] + floor["per_byte"]
    return {
        "budget_us": round(budget, 1),
        "public_key_us": round(floor["public_key"], 1),
        "per_byte_us": round(floor["per_byte"], 1),
        "floor_us": round(total, 1),
        "added_us": round(added_ms * 1000, 1) if added_ms is not None else None,
        "verdict": verdict(budget, floor["public_key"], total),
    }


def _added(ours: float | None, plain: float | None) -> float | None:
    return ours - plain if ours is not None and plain is not None else None


def reach(
    ops: dict[str, float],
    results: dict[str, dict[str, Any]],
    answer_bytes: dict[str, int],
    sealed: tuple[str, ...],
    kinds: tuple[Kind, ...],
) -> dict[str, dict[str, Any]]:
    """Per sealed mode and kind: the gateway's side (its capacity) and the end-to-end side
    (the core that limited plain's max-load run), each with budget, floor, what sealing
    measurably added, and the verdict. A kind without plain's numbers or an answer size is
    left out."""
    found: dict[str, dict[str, Any]] = {}
    for mode in sealed:
        found[mode] = {}
        for kind in kinds:
            plain = results.get("plain", {}).get(kind.maximum, {})
            ours = results.get(mode, {}).get(kind.maximum, {})
            size = answer_bytes.get(kind.name)
            plain_gateway = (plain.get("cpu_ms_per_request") or {}).get("gateway")
            if size is None or plain_gateway is None:
                continue
            floor = floors(ops, mode, size)
            ours_gateway = (ours.get("cpu_ms_per_request") or {}).get("gateway")
            sides = {
                "gateway": _side(
                    budget_us(plain_gateway), floor["gateway"], _added(ours_gateway, plain_gateway)
                )
            }
            limit = str(plain.get("bottleneck", ""))
            plain_load = _load_core_ms(plain)
            if "agent" in limit and plain_load is not None:
                sides["end_to_end"] = _side(
                    budget_us(plain_load), floor["agent"], _added(_load_core_ms(ours), plain_load)
                ) | {"limited_by": limit}
            elif "gateway" in limit:
                sides["end_to_end"] = sides["gateway"] | {"limited_by": limit}
            found[mode][kind.name] = sides
    return found
