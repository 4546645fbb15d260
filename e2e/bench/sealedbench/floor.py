"""How far the 0.9x target is: what sealing cannot do without, against what the target leaves.

`measure` times on this machine the cryptography every sealed request needs on wire v2,
however well the code around it is written:
- public-key work, amortized: requests travel in attested sessions (one X25519 handshake per
  session, hundreds of requests: left out), and receipts are audited by one Ed25519 signature
  on a Merkle root per batch of `ROOT_BATCH` receipts (the enclave signs, the gateway checks):
  a request's share is 1/ROOT_BATCH of each;
- per request: the receipt's HMAC-SHA256 tags (the enclave makes one per session the request
  came through, the gateway checks its own);
- work per KiB of answer: AES-128-GCM on every chunk (sealed by the enclave; opened by the
  gateway when it sealed the request) and SHA-256 over the chunks for the receipt's
  `response_sha256` (enclave and gateway).

Everything else sealing adds (frames, the request's AEAD, HKDF rekeys, Merkle hashing, HTTP
framing, the interpreter) is left out, so a floor is a lower bound. `reach` (pure) sets each
floor against its budget: the CPU plain spends per request on that side, times 1/0.9 - 1.
Two sides are judged: the gateway's own capacity (its process) and the end-to-end rate (the
core that limited plain's max-load run; here the agent's, shared with the engine and wrk, so
its floor is the agent's).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealedbench.kinds import Kind
from sealedbench.stats import TARGET_RATIO
from teeroute.sealing.batcher import DEFAULT_BATCH

KIB = 1024
BULK = 64 * KIB  # per-KiB costs are timed on 64 KiB, about a long answer
RECEIPT_BYTES = 512  # about a receipt's canonical JSON
BATCH = 10  # operations per timed sample
ROOT_BATCH = DEFAULT_BATCH
"""Receipts under one signed Merkle root (the agent's default batch)."""

OPS = (
    "x25519_keygen",
    "x25519_exchange",
    "ed25519_sign",
    "ed25519_verify",
    "hmac_sha256_receipt",
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
        "hmac_sha256_receipt": (lambda: hmac.new(bulk[:32], message, "sha256").digest(), 1),
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
    """Per side (`gateway`, `agent`): the public-key floor (a root's signature, shared by a
    batch), the receipt tags and the per-byte floor, in µs per request of `mode` whose answer
    is `answer_bytes` of plaintext."""
    kib = answer_bytes / KIB
    aead, sha = ops["aes128gcm_per_kib"] * kib, ops["sha256_per_kib"] * kib
    mac = ops["hmac_sha256_receipt"]
    checks_root, signs_root = ops["ed25519_verify"] / ROOT_BATCH, ops["ed25519_sign"] / ROOT_BATCH
    if mode == "gateway":  # the gateway opens every chunk of its session, checks its tag
        gateway = {"public_key": checks_root, "mac": mac, "per_byte": aead + sha}
        tags = 1
    else:  # chunks pass unopened; the gateway hashes them and checks its tag
        gateway = {"public_key": checks_root, "mac": mac, "per_byte": sha}
        tags = 2  # the gateway's and the client's
    agent = {"public_key": signs_root, "mac": tags * mac, "per_byte": aead + sha}
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
    total = floor["public_key"] + floor["mac"] + floor["per_byte"]
    return {
        "budget_us": round(budget, 1),
        "public_key_us": round(floor["public_key"], 1),
        "mac_us": round(floor["mac"], 1),
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
