"""API keys → accounts, with a short cache in front of the ledger.

Keys are only ever hashed (SHA-256) and the hash is the cache key, so no key is kept in
memory longer than the request. A cached account is at most `ttl_s` old; that bounds how
long a disabled key keeps working on this replica. Balances are never read from the cache:
the ledger's reserve decides spending.
"""

from __future__ import annotations

import hmac
import time

from teeroute_gateway.errors import Forbidden, Unauthorized
from teeroute_gateway.ledger import Account, Ledger, hash_key

MAX_ENTRIES = 100_000


class KeyCache:
    def __init__(
        self, ledger: Ledger, admin_hashes: list[str], ttl_s: float = 10.0, miss_ttl_s: float = 1.0
    ) -> None:
        self.ledger = ledger
        self.admin_hashes = admin_hashes
        self.ttl_s = ttl_s
        self.miss_ttl_s = miss_ttl_s
        self._cache: dict[str, tuple[float, Account | None]] = {}

    async def account(self, key: str | None) -> Account:
        if not key:
            raise Unauthorized(
                "an API key is required (Authorization: Bearer …)", code="missing_api_key"
            )
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            account = cached[1]
        else:
            account = await self.ledger.authenticate(key)
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            self._cache[digest] = (now + (self.ttl_s if account else self.miss_ttl_s), account)
        if account is None:
            raise Unauthorized("the API key is not valid", code="invalid_api_key")
        return account

    def require_admin(self, key: str | None) -> None:
        if not key:
            raise Unauthorized("an admin key is required", code="missing_api_key")
        digest = hash_key(key)
        if not any(hmac.compare_digest(digest, known) for known in self.admin_hashes):
            raise Forbidden("this endpoint needs an admin key", code="not_admin")
