"""Declared API keys: accounts a deployment lists by key hash, for GitOps and Helm.

A file (YAML or JSON, typically mounted from a Secret and named by the gateway setting
`apiKeysFile`) lists keys by SHA-256 only, never in plaintext:

    keys:
      - name: demo
        sha256: 9f86d08…   # printf %s "$KEY" | sha256sum
        credit: "10"       # granted once, when the account is created
        prefix: tr-Ab3x    # optional: how listings show the key

At startup the gateway creates the account of each hash not yet in the ledger; one already
there is left as it is (its balance is ledger state, not configuration, so a restart never
grants the credit twice). Replicas starting together create each account once.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from teeroute.errors import TeerouteError
from teeroute_gateway.ledger import Ledger, to_nano
from teeroute_gateway.ledger.base import account_for

log = logging.getLogger(__name__)
MAX_FILE_BYTES = 1024 * 1024


class DeclaredKeysError(TeerouteError):
    """The declared-keys file is missing, too large or invalid (named in the message)."""


class DeclaredKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    credit: Annotated[Decimal, Field(ge=0)] = Decimal(0)
    spend_limit: Annotated[Decimal | None, Field(alias="spendLimit", ge=0)] = None
    period: str | None = None
    prefix: Annotated[str, Field(max_length=8)] = "declared"


class DeclaredKeys(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: list[DeclaredKey] = Field(default_factory=list)


def load(path: Path) -> DeclaredKeys:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise DeclaredKeysError(
            f"cannot read the declared API keys ({path}): {exc.strerror}"
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise DeclaredKeysError(f"the declared API keys ({path}) exceed {MAX_FILE_BYTES} bytes")
    try:
        return DeclaredKeys.model_validate(yaml.safe_load(raw) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        # Pydantic's message names the field; the input values it may quote are hashes.
        raise DeclaredKeysError(f"invalid declared API keys ({path}): {exc}") from None


async def apply(ledger: Ledger, declared: DeclaredKeys, currency: str) -> int:
    """Create the accounts of declared keys the ledger lacks; how many were created."""
    created = 0
    for key in declared.keys:
        try:
            account = account_for(
                key.prefix,
                key.name,
                to_nano(key.credit),
                None if key.spend_limit is None else to_nano(key.spend_limit),
                key.period,
                currency,
            )
        except ValueError as exc:
            raise DeclaredKeysError(f"declared API key {key.name!r}: {exc}") from None
        if await ledger.declare_key(key.sha256, account):
            created += 1
            log.info("declared API key %r: account %s created", key.name, account.id)
    return created
