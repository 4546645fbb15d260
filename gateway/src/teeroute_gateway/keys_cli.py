"""`teeroute keys create|admin`, `teeroute gateway settlement`: the ledger from the shell;
`teeroute gateway gateway-key`: the key that authorizes the gateway's requests to agents.

They open the same ledger the gateway uses (the config file's, or TEEROUTE_GATEWAY_LEDGER
without --config). A new key is printed alone on stdout, once; details go to stderr, so
`KEY=$(teeroute keys create --credit 10 --config gw.yaml)` works in scripts.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import orjson

from teeroute.errors import TeerouteError
from teeroute_gateway import gateway_key as keyfile
from teeroute_gateway import reports
from teeroute_gateway.ledger import Ledger, SettlementRow, hash_key, open_ledger, to_nano
from teeroute_gateway.metering import display
from teeroute_gateway.settings import GatewaySettings
from teeroute_gateway.sources.file import load

T = TypeVar("T")


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
    key, account = asyncio.run(
        _with_ledger(
            settings,
            lambda ledger: ledger.create_key(
                name, credit_nano or 0, limit_nano, period, settings.currency
            ),
        )
    )
    print(key)
    print(
        f"created account {account.id} ({account.name or 'unnamed'}) with "
        f"{display(account.balance_nano)} "
        f"{account.currency}; the key above is shown only once",
        file=sys.stderr,
    )
    return 0


def admin_key() -> int:
    key = "tra-" + secrets.token_urlsafe(32)
    print(key)
    print(
        "add this to the GatewayConfig's spec.adminKeySha256 "
        "(or TEEROUTE_GATEWAY_ADMIN_KEY_SHA256):\n" + hash_key(key),
        file=sys.stderr,
    )
    return 0


def gateway_key(out: Path | None, show: Path | None) -> int:
    """A new gateway key written to `out`, or the one in `show`: its public half, as the
    operator (TEEROUTE_OPERATOR_GATEWAY_KEYS) and remote agents (TEEROUTE_AGENT_GATEWAY_KEYS)
    take it (several, comma-separated, during a rotation)."""
    if out is not None:
        public = keyfile.create(out)
        print(f"wrote a new gateway key to {out}; set gatewayKeyFile to it", file=sys.stderr)
    elif show is not None:
        public = keyfile.load(show).public_key().public_bytes_raw()
    else:
        raise UsageError("give --out FILE or --show FILE")
    encoded = keyfile.public_b64(public)
    print(f"TEEROUTE_OPERATOR_GATEWAY_KEYS={encoded}")
    print(f"TEEROUTE_AGENT_GATEWAY_KEYS={encoded}")
    return 0


def settlement(config: str, start: str | None, end: str | None) -> int:
    settings = _settings(config)
    for text, flag in ((start, "--from"), (end, "--to")):
        try:
            reports.period_bound(text)
        except ValueError as exc:
            raise UsageError(f"{flag} {exc}") from None
    since, until = reports.period(start, end)
    rows: list[SettlementRow] = asyncio.run(
        _with_ledger(settings, lambda ledger: ledger.settlement(since, until))
    )
    out = [reports.settlement_row(r) for r in rows]
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


async def _with_ledger(settings: GatewaySettings, use: Callable[[Ledger], Awaitable[T]]) -> T:
    """Open the configured ledger, use it once, close it (after its pending writes)."""
    ledger = open_ledger(settings.ledger)
    await ledger.open()
    try:
        return await use(ledger)
    finally:
        await ledger.close()
