"""The billing decision as one pure function, table-tested: `bill(hop, reported, counted,
receipt, hold)` gives every answered request a bounded figure and the reason for it."""

from __future__ import annotations

import pytest

from teeroute.sealing.receipt_body import ReceiptV2, parse_body, receipt_body
from teeroute_gateway.billing import Bill, Counted, Counts, Held, bill
from teeroute_gateway.metering import Usage
from teeroute_gateway.sealed import HopMode, Judgement
from tests.gateway.builders import catalog, pool, route

POOL = catalog([pool("p", "1", "2")], route(["p"])).pools["ns/p"]
IN, OUT = 1_000, 2_000  # nano-units per input and output token at these prices
HOLD = Held(10 * IN + 100 * OUT, 100, POOL)  # input estimate 10, output bound 100
OURS = Counted(10, 20)
NONE = Judgement("")


def receipt(input_tokens: int, output_tokens: int) -> ReceiptV2:
    sha = "00" * 32
    return parse_body(receipt_body({
        "session_id": "00" * 16, "index": 0, "request_id": "r", "model": "m",
        "served_model": "m", "input_tokens": input_tokens, "output_tokens": output_tokens,
        "usage_source": "engine", "status": 200, "complete": True, "hpke_key_sha256": sha,
        "signing_key_sha256": sha, "request_sha256": sha, "response_sha256": sha,
        "issued_at": "2026-12-05T00:00:00Z",
    }))  # fmt: skip


def usage(i: int, o: int, i_rep: bool = False, o_rep: bool = False) -> Usage:
    return Usage(i, o, i_rep, o_rep)


CASES: list[tuple[str, HopMode, Counts, Counted, Judgement, Held, Bill]] = [
    # plain hops: the miner's claim where believable, else ours
    ("claim believed", "plain", Counts(8, 20), OURS, NONE, HOLD,
     Bill(usage(8, 20, True, True), 8 * IN + 20 * OUT, 8 * IN + 20 * OUT, "reported")),
    ("no claim: our count", "plain", Counts(), Counted(10, 15), NONE, HOLD,
     Bill(usage(10, 15), 10 * IN + 15 * OUT, 10 * IN + 15 * OUT, "counted")),
    ("whole answer over-claimed (e)", "plain", Counts(8, 100_000), Counted(10, 5), NONE, HOLD,
     Bill(usage(8, 50, True), 8 * IN + 50 * OUT, 8 * IN + 100_000 * OUT, "claim_capped")),
    ("over the held bound", "plain", Counts(8, 90), Counted(10, 80), NONE,
     Held(10 * IN + 50 * OUT, 50, POOL),
     Bill(usage(8, 50, True), 8 * IN + 50 * OUT, 8 * IN + 90 * OUT, "bound_capped")),
    ("input claim beyond 10x the estimate", "plain", Counts(5_000, 20), OURS, NONE, HOLD,
     Bill(usage(10, 20, False, True), 10 * IN + 20 * OUT, 5_000 * IN + 20 * OUT, "claim_capped")),
    ("cost over the hold", "plain", Counts(90, 100), Counted(10, 100), NONE, HOLD,
     Bill(usage(90, 100, True, True), HOLD.amount_nano, 90 * IN + 100 * OUT, "hold_capped")),
    # sealed hops
    ("valid receipt", "gateway", Counts(12, 30), OURS, Judgement("valid", receipt(12, 30)),
     HOLD, Bill(usage(12, 30, True, True), 12 * IN + 30 * OUT, 12 * IN + 30 * OUT, "receipt")),
    ("receipt over the bound", "client", Counts(), Counted(10), Judgement("valid", receipt(3, 150)),
     HOLD, Bill(usage(3, 100, True), 3 * IN + 100 * OUT, 3 * IN + 150 * OUT, "bound_capped")),
    ("gateway hop left early (a)", "gateway", Counts(), Counted(10, 7), Judgement("missing"),
     HOLD, Bill(usage(10, 7), 10 * IN + 7 * OUT, 10 * IN + 7 * OUT, "receipt_missing")),
    ("client hop left early (a)", "client", Counts(), Counted(10, None, 9), Judgement("missing"),
     HOLD, Bill(usage(10, 9), 10 * IN + 9 * OUT, 10 * IN + 9 * OUT, "receipt_missing")),
    ("frames beyond the bound", "client", Counts(), Counted(10, None, 500), Judgement("missing"),
     HOLD, Bill(usage(10, 100), HOLD.amount_nano, 10 * IN + 500 * OUT, "receipt_missing")),
    ("invalid receipt", "client", Counts(), Counted(10, None, 9), Judgement("invalid"), HOLD,
     Bill(usage(10, 0), 0, 0, "receipt_invalid")),
    ("implausible receipt: our view", "gateway", Counts(8, 20), OURS,
     Judgement("implausible", receipt(8, 2_000)), HOLD,
     Bill(usage(8, 20, True, True), 8 * IN + 20 * OUT, 8 * IN + 20 * OUT, "receipt_implausible")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("hop", "reported", "counted", "judged", "hold", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bill(
    hop: HopMode,
    reported: Counts,
    counted: Counted,
    judged: Judgement,
    hold: Held,
    expected: Bill,
) -> None:
    found = bill(hop, reported, counted, judged, hold)
    assert found == expected
    assert 0 <= found.cost_nano <= hold.amount_nano  # bounded, always
    assert found.usage.output_tokens <= hold.output_bound
    assert found.claimed_nano >= found.cost_nano
