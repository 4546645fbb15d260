"""What a request is billed, decided in one pure function: `bill(hop, reported, counted,
receipt, hold) -> Bill`.

Called by inference.py once the answer is over (finished, broken off, or left by the client),
with everything the gateway knows; nothing here does I/O. Every answered request gets a bill
from a bounded figure and the reason that figure was chosen:

    receipt          a sealed hop's valid receipt (the enclave's signed counts)
    reported         the miner's own usage claim, believable
    counted          our own count (no claim came, e.g. the client left before the usage chunk)
    receipt_missing  a sealed hop without a receipt (the client left, or the miner sent none):
                     our counts of the opened answer (gateway hop) or the frames relayed,
                     one token each (client hop: the gateway cannot open them)
    receipt_implausible  a receipt claiming more than the gateway saw: billed as missing
    receipt_invalid  a receipt not signed by the attested key, or for other bytes: the answer's
                     origin cannot be shown, billed 0 (flagged for the dispute)
    claim_capped     a claim above CLAIM_CAP x our count: our count x CLAIM_CAP (input: our
                     estimate), as for streams and whole answers alike
    bound_capped     a figure above the output bound the hold covers: the bound (the miner
                     was told that bound, so more is its own doing)
    hold_capped      a cost above the hold (input far above the estimate): the hold

`claimed_nano` is what the claim would have cost uncapped, so the ledger can show when a
miner got less than it claimed (settlement's `capped`).
"""

from __future__ import annotations

from dataclasses import dataclass

from teeroute_gateway.catalog import Pool
from teeroute_gateway.metering import CLAIM_CAP, Usage, cost_nano
from teeroute_gateway.sealed import HopMode, Judgement

Reason = str


@dataclass(frozen=True, slots=True)
class Counts:
    """Token counts someone claims; None where they claimed nothing."""

    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Counted:
    """What the gateway itself saw: its input estimate, the output it counted in an answer it
    could read (None: it could not read one), and the sealed frames it relayed."""

    input_estimate: int
    output_tokens: int | None = None
    frames: int = 0


@dataclass(frozen=True, slots=True)
class Held:
    """What the request's hold covers: its amount, the output bound it was computed on (the
    bound the miner was sent), and the prices of the pool that served it."""

    amount_nano: int
    output_bound: int
    pool: Pool


@dataclass(frozen=True, slots=True)
class Bill:
    usage: Usage
    cost_nano: int
    claimed_nano: int
    reason: Reason


def bill(hop: HopMode, reported: Counts, counted: Counted, receipt: Judgement, hold: Held) -> Bill:
    """The bill of one answered request (see the module docstring for the reasons)."""
    if hop != "plain":
        found = receipt.receipt
        if receipt.status == "valid" and found is not None:
            claim = Counts(found.input_tokens, found.output_tokens)
            return _bounded(_believed(claim, counted, trusted=True), claim, hold, "receipt")
        if receipt.status == "invalid":
            return Bill(Usage(counted.input_estimate, 0, False, False), 0, 0, "receipt_invalid")
        reason = f"receipt_{receipt.status or 'missing'}"
        if hop == "client":
            seen = Usage(counted.input_estimate, counted.frames, False, False)
            return _bounded(seen, Counts(), hold, reason)
        return _bounded(_believed(reported, counted), reported, hold, reason)
    usage = _believed(reported, counted)
    source = "reported" if usage.output_reported else "counted"
    if (reported.output_tokens is not None and not usage.output_reported) or (
        reported.input_tokens is not None and not usage.input_reported
    ):
        source = "claim_capped"
    return _bounded(usage, reported, hold, source)


def _believed(claim: Counts, counted: Counted, trusted: bool = False) -> Usage:
    """The claim where it is believable (trusted: a valid receipt), else our own counts."""
    ours_out = counted.output_tokens
    output, out_reported = (ours_out or 0), False
    if claim.output_tokens is not None:
        output, out_reported = claim.output_tokens, True
        if not trusted and ours_out is not None and output > CLAIM_CAP * max(ours_out, 1):
            output, out_reported = CLAIM_CAP * max(ours_out, 1), False
    inputs, in_reported = counted.input_estimate, False
    if claim.input_tokens is not None and (
        trusted or claim.input_tokens <= CLAIM_CAP * max(counted.input_estimate, 1)
    ):
        inputs, in_reported = claim.input_tokens, True
    return Usage(inputs, output, in_reported, out_reported)


def _bounded(usage: Usage, claim: Counts, hold: Held, reason: Reason) -> Bill:
    """`usage` within the output bound and its cost within the hold."""
    claimed = cost_nano(
        hold.pool,
        usage.input_tokens if claim.input_tokens is None else claim.input_tokens,
        usage.output_tokens if claim.output_tokens is None else claim.output_tokens,
    )
    if usage.output_tokens > hold.output_bound:
        usage = Usage(usage.input_tokens, hold.output_bound, usage.input_reported, False)
        reason = reason if reason.startswith("receipt_") else "bound_capped"
    cost = cost_nano(hold.pool, usage.input_tokens, usage.output_tokens)
    if cost > hold.amount_nano:
        cost = hold.amount_nano
        reason = reason if reason.startswith("receipt_") else "hold_capped"
    return Bill(usage, cost, max(claimed, cost), reason)
