"""The ledger's value types: accounts, holds, usage records and settlement rows.

Plain frozen dataclasses, so the gateway can pass them between tasks and threads freely and a
record read back from either backend compares equal to the one written. Money is always an
integer of nano-units (see money.py); times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

SpendPeriod = Literal["day", "month"]

# A usage record's receipt_status (sealed mode, docs/sealed-mode.md section 3): "" when no
# receipt is expected (a plain hop), "valid" when the enclave's usage receipt verified, else
# why it is flagged; flagged records are counted in the settlement (the miner owes an
# explanation). "missing", "invalid" and "implausible" are set when the request is settled and
# billed as billing.py says. "unrooted" (wire v2) is set later, by flag_unrooted, on a "valid"
# record whose receipt no signed Merkle root covered in time: its charge stands (the counts
# were authenticated by the session's MAC when it was billed), but no third party can be shown
# the receipt, so it is flagged.
RECEIPT_STATUSES = ("", "valid", "missing", "invalid", "implausible", "unrooted")
FLAGGED_RECEIPTS = ("missing", "invalid", "implausible", "unrooted")


@dataclass(frozen=True)
class Account:
    """A prepaid account, identified to clients by one API key (only its hash is stored)."""

    id: str
    name: str
    key_prefix: str  # the key's first 8 characters, to tell keys apart in listings
    currency: str
    balance_nano: int  # credit minus settled spend
    held_nano: int  # sum of the open holds
    spend_limit_nano: int | None
    spend_period: SpendPeriod | None
    disabled: bool

    @property
    def available_nano(self) -> int:
        """What a new hold may take, before any spend limit."""
        return self.balance_nano - self.held_nano


@dataclass(frozen=True)
class Hold:
    """Credit set aside for one request in flight; settled, released, or reaped at expiry."""

    id: str
    account_id: str
    amount_nano: int
    request_id: str
    expires_at: datetime


@dataclass(frozen=True)
class UsageRecord:
    """Everything the gateway knows about a finished request, as metered.

    `input_reported`/`output_reported` say whether a count is what upstream reported (True) or
    what the gateway counted or estimated (False). `cost_nano` is the bill (gateway billing.py),
    `bill_reason` why it is that figure, and `claimed_nano` what the miner's claim (its usage,
    or its receipt) would have cost uncapped (None: as `cost_nano`; records of older gateways).
    `charged_nano` and `capped` are set by the ledger on settle: the charge is the cost, capped
    at the request's hold, and `capped` says the miner got less than it claimed. `receipt_status` is
    one of RECEIPT_STATUSES; `receipt` is the enclave's signed usage receipt as the gateway
    received it (canonical JSON text), stored and returned verbatim, never parsed by the ledger.
    `ttft_ms` and `tpot_ms` are the stream's time to first content and per output token as
    speed.py measures them (None: a whole answer, or a stream of fewer than two tokens for TPOT).
    """

    request_id: str
    account_id: str
    public_model: str
    pool: str
    endpoint: str
    upstream_model: str
    input_tokens: int
    output_tokens: int
    input_reported: bool
    output_reported: bool
    cost_nano: int
    latency_ms: float
    ttft_ms: float | None
    status: int
    outcome: str
    streamed: bool
    created_at: datetime
    charged_nano: int = 0
    capped: bool = False
    receipt_status: str = ""
    receipt: str | None = None
    claimed_nano: int | None = None
    bill_reason: str = ""
    tpot_ms: float | None = None

    @property
    def claimed(self) -> int:
        """What the miner claimed, in nano-units (the cost where it claimed nothing more)."""
        return max(self.cost_nano, self.claimed_nano or 0)

    def charged(self, charged_nano: int, capped: bool) -> UsageRecord:
        """This record as settled: a copy of every field but these two. It runs on every
        request, so it copies the instance dict instead of calling __init__ (dataclasses.replace
        costs eight times as much): valid while the class has no __post_init__ and no slots."""
        settled = object.__new__(UsageRecord)
        fields = settled.__dict__
        fields.update(self.__dict__)
        fields["charged_nano"] = charged_nano
        fields["capped"] = capped
        return settled


@dataclass(frozen=True)
class SettlementRow:
    """What one pool earned in [period_start, period_end), in one currency."""

    pool: str
    period_start: datetime
    period_end: datetime
    requests: int
    input_tokens: int
    output_tokens: int
    amount_nano: int
    currency: str
    flagged: int = 0  # records whose receipt_status is in FLAGGED_RECEIPTS
    capped: int = 0  # records charged less than the miner claimed
    claimed_nano: int = 0  # what the miners claimed (uncapped); claimed - amount: underpaid
