"""API keys and identifiers: made from the OS's random source, stored only as hashes.

A key is `tr-` plus 43 url-safe base64 characters (32 random bytes). The ledger stores its
SHA-256 and its first 8 characters (for listings); the plaintext is returned once, by
create_key, and nowhere kept. A plain hash suffices: with 256 bits of entropy there is nothing
to brute-force, and lookups stay one indexed query per request.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

KEY_PREFIX = "tr-"
DISPLAY_CHARS = 8


def new_key() -> str:
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=")
    return KEY_PREFIX + raw.decode("ascii")


def hash_key(api_key: str) -> str:
    """Hex SHA-256 of the key: what the ledger stores and looks up."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def display_prefix(api_key: str) -> str:
    return api_key[:DISPLAY_CHARS]


def new_id(kind: str) -> str:
    """An opaque identifier such as `acct_3f…` (96 random bits: unique without coordination)."""
    return f"{kind}_{secrets.token_hex(12)}"
