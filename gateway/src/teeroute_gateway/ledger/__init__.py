"""The metering ledger: prepaid accounts, API keys, in-flight holds and usage records.

The gateway calls it on every request: `authenticate` the key, `reserve` the worst-case cost
as a hold before routing, then `settle` the hold with the metered usage (charging at most the
hold, so an account can never overspend) or `release` it. Holds of a crashed gateway expire
and are `reap`ed. Money is integer nano-units (`to_nano`, `from_nano`). Backends: SQLite (one
machine) and PostgreSQL (several replicas), chosen by URL in `open_ledger`. In sealed mode a
record carries the enclave's usage receipt and its verdict (`receipt_status`); the settlement
counts each pool's records with a FLAGGED_RECEIPTS verdict. Wire v2 receipts' inclusion proofs
under the enclaves' signed Merkle roots are kept per request (`store_receipt_proofs`,
`receipt_proof`); receipts no root covered in time are flagged (`flag_unrooted`).
"""

from .base import Ledger
from .errors import BudgetExceeded, InsufficientCredit, LedgerError, UnknownAccount
from .factory import open_ledger
from .keys import hash_key
from .models import (
    FLAGGED_RECEIPTS,
    RECEIPT_STATUSES,
    Account,
    Hold,
    SettlementRow,
    SpendPeriod,
    UsageRecord,
)
from .money import from_nano, to_nano

__all__ = [
    "FLAGGED_RECEIPTS",
    "RECEIPT_STATUSES",
    "Account",
    "BudgetExceeded",
    "Hold",
    "InsufficientCredit",
    "Ledger",
    "LedgerError",
    "SettlementRow",
    "SpendPeriod",
    "UnknownAccount",
    "UsageRecord",
    "from_nano",
    "hash_key",
    "open_ledger",
    "to_nano",
]
