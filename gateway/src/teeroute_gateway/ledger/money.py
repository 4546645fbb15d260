"""Money as integer nano-units (1e-9 of the currency), exact both ways.

Prices arrive as decimal strings (MinerPool pricing, admin commands) and costs are summed over
millions of requests, so the ledger never holds money in a float. Called by the gateway when it
prices a request and by anything that shows or accepts an amount.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

NANO_DIGITS = 9


def to_nano(value: Decimal | str) -> int:
    """Nano-units of a non-negative decimal amount with at most 9 decimals (trailing zeros
    beyond the 9th are fine: the value is still exact). Floats are refused: they are rarely
    the amount that was meant."""
    if not isinstance(value, Decimal | str):
        raise ValueError(f"an amount must be a Decimal or a decimal string, not {type(value)}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"an amount must be finite and not negative: {value!r}")
    _, digits, exponent = amount.as_tuple()
    whole = int("".join(map(str, digits)))
    shift = int(exponent) + NANO_DIGITS  # an int: the amount is finite
    if shift >= 0:
        return int(whole * 10**shift)
    nano, rest = divmod(whole, 10**-shift)
    if rest:
        raise ValueError(f"more than {NANO_DIGITS} decimals: {value!r}")
    return int(nano)


def from_nano(nano: int) -> Decimal:
    """The decimal amount of `nano` nano-units, exact (e.g. 1500000000 -> 1.500000000)."""
    return Decimal(f"{int(nano)}E-{NANO_DIGITS}")
