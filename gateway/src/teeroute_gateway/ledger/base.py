"""The Ledger interface the gateway calls, and the argument checks both backends share.

The gateway authenticates each request's key, reserves the request's worst-case cost as a
hold before routing it, and settles the hold with the metered usage afterwards (or releases
it when nothing was served). `reap` returns the holds of requests whose gateway died. Backends:
sqlite.py (one node, a file) and postgres.py (several gateway replicas); open_ledger picks one.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

from .keys import display_prefix, new_id, new_key
from .models import RECEIPT_STATUSES, Account, Hold, SettlementRow, SpendPeriod, UsageRecord

DEFAULT_HOLD_TTL_S = 900.0
MAX_PROOF_CHARS = 64 * 1024  # a proof bundle is at most teeroute.sealing.roots.MAX_BUNDLE


def utc_now() -> datetime:
    return datetime.now(UTC)


class Ledger(abc.ABC):
    """Accounts, holds and usage in one database, safe for many concurrent callers and for
    several processes sharing the database: every balance check happens in the database."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the schema if missing (idempotent, safe to race)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish the operations already submitted, then disconnect."""

    @abc.abstractmethod
    async def create_key(
        self,
        name: str,
        credit_nano: int,
        spend_limit_nano: int | None = None,
        spend_period: str | None = None,
        currency: str = "USD",
    ) -> tuple[str, Account]:
        """A new account and its API key: the plaintext is returned here and never again."""

    @abc.abstractmethod
    async def declare_key(self, key_hash: str, account: Account) -> bool:
        """Store `account` under a key known only by its SHA-256 (a declared key, e.g. from
        a Secret), unless that hash already has an account: whether it was created. Safe to
        race: replicas declaring the same key at once create it once."""

    @abc.abstractmethod
    async def authenticate(self, api_key: str) -> Account | None:
        """The account of an enabled key, else None."""

    @abc.abstractmethod
    async def account(self, account_id: str) -> Account | None: ...

    @abc.abstractmethod
    async def add_credit(self, account_id: str, amount_nano: int) -> Account: ...

    @abc.abstractmethod
    async def set_disabled(self, account_id: str, disabled: bool) -> Account:
        """Disable (or re-enable) an account: its key stops authenticating, holds are refused."""

    @abc.abstractmethod
    async def reserve(
        self, account_id: str, amount_nano: int, request_id: str, ttl_s: float = DEFAULT_HOLD_TTL_S
    ) -> Hold:
        """Hold `amount_nano` if the balance and the spend limit allow it, atomically;
        else raise InsufficientCredit, BudgetExceeded or UnknownAccount."""

    @abc.abstractmethod
    async def settle(self, hold: Hold, record: UsageRecord) -> UsageRecord:
        """Replace the hold by the charge min(cost, hold) and record the usage, atomically.
        Idempotent: settling again returns the first settlement and charges nothing. The
        receipt and its status are stored as given (a flagged record's cost is the caller's
        to set to 0)."""

    @abc.abstractmethod
    async def renew(self, hold: Hold, ttl_s: float = DEFAULT_HOLD_TTL_S) -> bool:
        """Keep a hold of a request still running for `ttl_s` more from now; False when the
        hold is gone (settled, released or reaped)."""

    @abc.abstractmethod
    async def release(self, hold: Hold) -> None:
        """Drop the hold without charging (nothing was served)."""

    @abc.abstractmethod
    async def reap(self, now: datetime | None = None) -> int:
        """Release every hold past its expiry; how many there were."""

    @abc.abstractmethod
    async def usage(self, request_id: str) -> UsageRecord | None: ...

    @abc.abstractmethod
    async def usage_records(
        self, start: datetime, end: datetime, limit: int = 1000
    ) -> list[UsageRecord]:
        """Usage created in [start, end), oldest first, at most `limit`."""

    @abc.abstractmethod
    async def store_receipt_proofs(self, proofs: Sequence[tuple[str, str]]) -> int:
        """Keep each (request id, proof bundle JSON text): the inclusion proof of the request's
        receipt under a root its enclave signed (teeroute.sealing.roots), stored verbatim and
        never parsed. A request's first proof is kept; one may come before its usage record.
        A record flagged "unrooted" whose proof comes after all is "valid" again. Returns how
        many proofs were new."""

    @abc.abstractmethod
    async def receipt_proof(self, request_id: str) -> str | None:
        """The request's proof bundle as stored, or None."""

    @abc.abstractmethod
    async def flag_unrooted(self, request_ids: Sequence[str]) -> int:
        """Flag "unrooted" the records among `request_ids` whose receipt was "valid" and has no
        proof (no signed root covered it in time); their charge is left as settled. Returns how
        many records changed."""

    @abc.abstractmethod
    async def settlement(self, start: datetime, end: datetime) -> list[SettlementRow]:
        """Per pool (and currency): requests, tokens, the amount charged, the number of
        flagged records (receipt_status in FLAGGED_RECEIPTS), of capped ones (charged less
        than claimed) and what was claimed, in [start, end)."""


def new_account(
    name: str,
    credit_nano: int,
    spend_limit_nano: int | None,
    spend_period: str | None,
    currency: str,
) -> tuple[str, Account]:
    """A fresh key and the account it opens (checked; not yet stored)."""
    key = new_key()
    account = account_for(
        display_prefix(key), name, credit_nano, spend_limit_nano, spend_period, currency
    )
    return key, account


def account_for(
    key_prefix: str,
    name: str,
    credit_nano: int,
    spend_limit_nano: int | None,
    spend_period: str | None,
    currency: str,
) -> Account:
    """A new account (checked; not yet stored) for a key shown as `key_prefix`."""
    check_amount(credit_nano, "credit_nano")
    period = check_limit(spend_limit_nano, spend_period)
    return Account(
        id=new_id("acct"),
        name=name,
        key_prefix=key_prefix,
        currency=currency,
        balance_nano=credit_nano,
        held_nano=0,
        spend_limit_nano=spend_limit_nano,
        spend_period=period,
        disabled=False,
    )


def new_hold(
    account_id: str, amount_nano: int, request_id: str, ttl_s: float, now: datetime
) -> Hold:
    check_amount(amount_nano)
    return Hold(new_id("hold"), account_id, amount_nano, request_id, now + timedelta(seconds=ttl_s))


def check_amount(amount_nano: int, what: str = "amount") -> None:
    if isinstance(amount_nano, bool) or not isinstance(amount_nano, int) or amount_nano < 0:
        raise ValueError(f"{what} must be a non-negative integer of nano-units")


def check_limit(spend_limit_nano: int | None, spend_period: str | None) -> SpendPeriod | None:
    """A spend limit needs a period and a period needs a limit."""
    if (spend_limit_nano is None) != (spend_period is None):
        raise ValueError("spend_limit_nano and spend_period go together")
    if spend_limit_nano is not None:
        check_amount(spend_limit_nano, "spend_limit_nano")
    if spend_period not in (None, "day", "month"):
        raise ValueError(f"spend_period must be 'day' or 'month', not {spend_period!r}")
    return cast(SpendPeriod | None, spend_period)


def check_record(hold: Hold, record: UsageRecord) -> None:
    check_amount(record.cost_nano, "cost_nano")
    if (record.request_id, record.account_id) != (hold.request_id, hold.account_id):
        raise ValueError("the usage record and the hold are for different requests")
    if record.receipt_status not in RECEIPT_STATUSES:
        raise ValueError(f"receipt_status must be one of {RECEIPT_STATUSES}")
    if record.receipt is not None:
        check_receipt(record.receipt)


def check_receipt(receipt: str) -> None:
    """Text both backends store verbatim: PostgreSQL text holds no NUL and neither database
    nor JSON holds a lone surrogate. (Canonical JSON never contains either.)"""
    if not isinstance(receipt, str):
        raise ValueError("receipt must be text (canonical JSON) or None")
    if "\x00" in receipt:
        raise ValueError("receipt must not contain NUL characters")
    try:
        receipt.encode()
    except UnicodeEncodeError:
        raise ValueError("receipt must be valid Unicode (no lone surrogates)") from None


def check_proofs(proofs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(request id, proof text) pairs both backends can store verbatim (see check_receipt)."""
    checked = []
    for request_id, proof in proofs:
        if not isinstance(request_id, str) or not request_id:
            raise ValueError("a receipt proof needs its request id")
        check_receipt(proof)
        if len(proof) > MAX_PROOF_CHARS:
            raise ValueError(f"a receipt proof is at most {MAX_PROOF_CHARS} characters")
        checked.append((request_id, proof))
    return checked


def check_request_ids(request_ids: Sequence[str]) -> list[str]:
    if isinstance(request_ids, str) or not all(isinstance(r, str) for r in request_ids):
        raise ValueError("request_ids must be a sequence of request ids")
    return list(request_ids)
