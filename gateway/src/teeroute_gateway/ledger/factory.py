"""open_ledger: a Ledger from a database URL, as the gateway's settings give it.

    sqlite:///ledger.db           relative path (SQLAlchemy's convention: three slashes)
    sqlite:////var/lib/ledger.db  absolute path (four)
    sqlite:///:memory:            private, in-memory (tests)
    postgresql://user@host:5432/db   (or postgres://; any libpq URL parameters pass through)

The ledger is returned unopened: `await ledger.open()` connects and creates the schema.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from .base import Ledger, utc_now
from .sqlite import SqliteLedger

SQLITE = "sqlite:///"
POSTGRES = ("postgresql://", "postgres://")


def open_ledger(url: str, *, clock: Callable[[], datetime] = utc_now) -> Ledger:
    """The backend for `url`; `clock` (UTC now) is for tests of periods and expiry."""
    if url.startswith(SQLITE) and len(url) > len(SQLITE):
        return SqliteLedger(url[len(SQLITE) :], clock=clock)
    if url.startswith(POSTGRES):
        from .postgres import PostgresLedger  # psycopg only when used: it is slow to import

        return PostgresLedger(url, clock=clock)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ValueError(
        f"unsupported ledger URL scheme {scheme!r}: use sqlite:///PATH, sqlite:///:memory:, "
        "postgresql://… or postgres://…"
    )
