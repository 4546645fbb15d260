"""Declared API keys (a Secret's list of key hashes) on both ledger backends: created once,
never re-credited by a restart or a second replica, and a bad file is a typed error."""

from __future__ import annotations

import asyncio
import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from teeroute_gateway import declared_keys
from teeroute_gateway.declared_keys import DeclaredKey, DeclaredKeys, DeclaredKeysError
from teeroute_gateway.ledger import Ledger, open_ledger, to_nano

from .conftest import Clock

pytestmark = pytest.mark.anyio

KEY = "tr-declared-demo-key-0123456789abcdefghijklmnopqrstu"
SHA = hashlib.sha256(KEY.encode()).hexdigest()


def declared(credit: str = "10") -> DeclaredKeys:
    return DeclaredKeys(
        keys=[DeclaredKey(name="demo", sha256=SHA, credit=Decimal(credit), prefix=KEY[:8])]
    )


async def test_a_declared_key_authenticates_with_its_credit(ledger: Ledger) -> None:
    assert await declared_keys.apply(ledger, declared(), "USD") == 1

    account = await ledger.authenticate(KEY)
    assert account is not None
    assert (account.name, account.balance_nano, account.key_prefix) == (
        "demo",
        to_nano("10"),
        KEY[:8],
    )
    assert await ledger.authenticate(KEY + "x") is None


async def test_declaring_again_never_grants_the_credit_twice(ledger: Ledger) -> None:
    await declared_keys.apply(ledger, declared("10"), "USD")
    first = await ledger.authenticate(KEY)
    assert first is not None
    await ledger.add_credit(first.id, to_nano("5"))

    # a restart, or an edited Secret raising the credit: the ledger's balance stands
    assert await declared_keys.apply(ledger, declared("99"), "USD") == 0
    again = await ledger.authenticate(KEY)
    assert again is not None
    assert (again.id, again.balance_nano) == (first.id, to_nano("15"))


async def test_replicas_declaring_together_create_one_account(
    ledger_url: str, clock: Clock
) -> None:
    ledgers = [open_ledger(ledger_url, clock=clock) for _ in range(4)]
    for one in ledgers:
        await one.open()
    try:
        created = await asyncio.gather(
            *(declared_keys.apply(one, declared(), "USD") for one in ledgers)
        )
        assert sum(created) == 1
        account = await ledgers[0].authenticate(KEY)
        assert account is not None and account.balance_nano == to_nano("10")
    finally:
        for one in ledgers:
            await one.close()


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("keys: [{name: a, sha256: nothex}]", "sha256"),
        ("keys: [{name: a, sha256: " + SHA + ", credit: -1}]", "credit"),
        ("keys: [{name: a, sha256: " + SHA + ", plaintext: tr-x}]", "plaintext"),
        ("keys: {", "invalid declared API keys"),
    ],
)
def test_a_bad_file_is_a_typed_error_naming_the_field(
    tmp_path: Path, text: str, names: str
) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(DeclaredKeysError, match=names):
        declared_keys.load(path)


def test_an_oversized_or_missing_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (declared_keys.MAX_FILE_BYTES + 1))
    with pytest.raises(DeclaredKeysError, match="exceed"):
        declared_keys.load(big)
    with pytest.raises(DeclaredKeysError, match="cannot read"):
        declared_keys.load(tmp_path / "absent.yaml")


def test_a_file_loads_keys_by_hash(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  - name: demo\n    sha256: {SHA}\n    credit: '2.5'\n")
    loaded = declared_keys.load(path)
    assert [(k.name, k.sha256, k.credit) for k in loaded.keys] == [("demo", SHA, Decimal("2.5"))]
