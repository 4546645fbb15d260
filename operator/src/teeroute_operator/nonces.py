"""Single-use challenge nonces.

Each challenge gets 32 fresh random bytes, remembered with the time they were issued and the
endpoint they were sent to. Evidence is judged only against a nonce this book issued for that
endpoint and has not yet redeemed: a replayed document, or one answered for a different
endpoint (a relay), finds nothing to redeem. Unredeemed nonces are forgotten after `ttl`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

NONCE_BYTES = 32


class NonceRejected(Exception):
    """The nonce was never issued, was issued for another endpoint, or was already used."""


@dataclass(frozen=True)
class Issued:
    endpoint: str
    issued_at: dt.datetime


class NonceBook:
    def __init__(self, ttl: dt.timedelta) -> None:
        self._ttl = ttl
        self._issued: dict[bytes, Issued] = {}

    def issue(self, endpoint: str, now: dt.datetime) -> bytes:
        self._forget_before(now - self._ttl)
        nonce = secrets.token_bytes(NONCE_BYTES)
        self._issued[nonce] = Issued(endpoint, now)
        return nonce

    def redeem(self, nonce: bytes, endpoint: str, now: dt.datetime) -> dt.datetime:
        """The issue time of `nonce`, which can never be redeemed again."""
        issued = self._issued.pop(nonce, None)
        if issued is None:
            raise NonceRejected("the nonce was not issued by this operator or was already used")
        if issued.endpoint != endpoint:
            raise NonceRejected("the nonce was issued to a different endpoint")
        if now - issued.issued_at > self._ttl:
            raise NonceRejected("the nonce is older than the challenge timeout")
        return issued.issued_at

    def outstanding(self) -> int:
        return len(self._issued)

    def _forget_before(self, cutoff: dt.datetime) -> None:
        stale = [n for n, i in self._issued.items() if i.issued_at < cutoff]
        for nonce in stale:
            del self._issued[nonce]
