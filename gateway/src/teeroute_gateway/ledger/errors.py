"""The ledger's errors, mapped to HTTP by the gateway in one place.

    TeerouteError                (teeroute.errors)
    └── LedgerError              the ledger failed or was misused (database down, not open)
        ├── InsufficientCredit   balance minus holds does not cover the request (402)
        ├── BudgetExceeded       the account's spend limit for the period is reached (402 +
        │                        Retry-After: the period's end)
        └── UnknownAccount       no such account, or it is disabled (401)

Messages name accounts by id and amounts in nano-units; never an API key.
"""

from __future__ import annotations

from teeroute.errors import TeerouteError


class LedgerError(TeerouteError):
    """The ledger could not do what was asked."""


class InsufficientCredit(LedgerError):
    def __init__(self, available_nano: int, needed_nano: int) -> None:
        super().__init__(
            f"insufficient credit: {available_nano} nano-units available, {needed_nano} needed"
        )
        self.available_nano = available_nano
        self.needed_nano = needed_nano


class BudgetExceeded(LedgerError):
    """`spent_nano` counts what was settled in the period plus what is held right now."""

    def __init__(self, limit_nano: int, spent_nano: int, period: str, retry_after_s: int) -> None:
        super().__init__(
            f"spend limit of {limit_nano} nano-units per {period} reached "
            f"({spent_nano} spent or held); retry in {retry_after_s} s"
        )
        self.limit_nano = limit_nano
        self.spent_nano = spent_nano
        self.period = period
        self.retry_after_s = retry_after_s


class UnknownAccount(LedgerError):
    def __init__(self, account_id: str) -> None:
        super().__init__(f"unknown or disabled account {account_id!r}")
        self.account_id = account_id
