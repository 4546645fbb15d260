"""`teeroute keys create|admin` and `teeroute gateway settlement`: the ledger from the shell.

They open the same ledger the gateway uses (the config file's, or TEEROUTE_GATEWAY_LEDGER
without --config). A new key is printed alone on stdout, once; details go to stderr, so
`KEY=$(teeroute keys create --credit 10 --config gw.yaml)` works in scripts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import secrets
import sys
from decimal import Decimal

import orjson

from teeroute.admission import parse_time
from teeroute.errors import TeerouteError
from teeroute_gateway.ledger import Account, SettlementRow, from_nano, open_ledger, to_nano
from teeroute_gateway.settings import GatewaySettings
from teeroute_gateway.sources.file import load


class UsageError(TeerouteError):
    exit_code = 2


def _settings(config: str | None) -> GatewaySettings:
    return load(config).settings if config else GatewaySettings.from_env(os.environ)


def _nano(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    try:
        return to_nano(Decimal(text))
    except (ValueError, ArithmeticError):
        raise UsageError(
            f"{flag} must be a non-negative amount with at most 9 decimals, e.g. 10 or 0.5"
        ) from None


def create_key(
    config: str | None, credit: str, name: str, spend_limit: str | None, period: str | None
) -> int:
    credit_nano = _nano(credit, "--credit")
    limit_nano = _nano(spend_limit, "--spend-limit")
    if (limit_nano is None) != (period is None):
        raise UsageError("--spend-limit and --period go together")
    settings = _settings(config)
    key, account = asyncio.run(_create(settings, name, credit_nano or 0, limit_nano, period))
    print(key)
    print(
        f"created account {account.id} ({account.name or 'unnamed'}) with "
        f"{from_nano(account.balance_nano).normalize():f} "
        f"{account.currency}; the key above is shown only once",
        file=sys.stderr,
    )
    return 0


async def _create(
    settings: GatewaySettings, name: str, credit: int, limit: int | None, period: str | None
) -> tuple[str, Account]:
    ledger = open_ledger(settings.ledger)
    await ledger.open()
    try:
        return await ledger.create_key(name, credit, limit, period, settings.currency)
    finally:
        await ledger.close()


def admin_key() -> int:
    key = "tra-" + secrets.token_urlsafe(32)
    print(key)
    print(
        "add this to the GatewayConfig's spec.adminKeySha256 "
        "(or TEEROUTE_GATEWAY_ADMIN_KEY_SHA256):\n" + hashlib.sha256(key.encode()).hexdigest(),
        file=sys.stderr,
    )
    return 0


def settlement(config: str, start: str | None, end: str | None) -> int:
    settings = _settings(config)
    until = _when(end, "--to") or dt.datetime.now(dt.UTC)
    since = _when(start, "--from") or until - dt.timedelta(days=30)
    rows = asyncio.run(_settlement(settings, since, until))
    out = [
        {
            "pool": r.pool,
            "from": r.period_start,
            "to": r.period_end,
            "requests": r.requests,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "amount": str(from_nano(r.amount_nano)),
            "currency": r.currency,
        }
        for r in rows
    ]
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


async def _settlement(
    settings: GatewaySettings, start: dt.datetime, end: dt.datetime
) -> list[SettlementRow]:
    ledger = open_ledger(settings.ledger)
    await ledger.open()
    try:
        return await ledger.settlement(start, end)
    finally:
        await ledger.close()


def _when(text: str | None, flag: str) -> dt.datetime | None:
    if not text:
        return None
    when = parse_time(text if "T" in text else f"{text}T00:00:00Z")
    if when is None:
        raise UsageError(f"{flag} must be an RFC 3339 time or a date (YYYY-MM-DD)")
    return when
