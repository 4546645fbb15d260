"""The gateway's authorization header (teeroute.sealing.gateway_auth), pure: what it covers,
what it refuses and how it names the check, without a network."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.sealing import gateway_auth
from teeroute.sealing.gateway_auth import Refused

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key().public_bytes_raw()
OTHER = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ENCLAVE = "ab" * 32
NOW_MS = 1_765_000_000_000
WINDOW_MS = 60_000
REQUEST = ("POST", "/v1/chat/completions", b'{"model": "m"}')


def signed(key: ed25519.Ed25519PrivateKey = KEY, **changes: object) -> str:
    fields: dict[str, object] = {
        "method": REQUEST[0],
        "path": REQUEST[1],
        "body": REQUEST[2],
        "hpke_key_sha256": ENCLAVE,
        "now_ms": NOW_MS,
    }
    fields.update(changes)
    return gateway_auth.sign(key, **fields)  # type: ignore[arg-type]


def verify(
    value: str | None, pinned: tuple[bytes, ...] = (PUBLIC,), now_ms: int = NOW_MS
) -> object:
    return gateway_auth.verify(value, pinned, *REQUEST, ENCLAVE, now_ms, WINDOW_MS)


def test_a_header_signed_for_this_request_verifies() -> None:
    found = verify(signed())
    assert isinstance(found, gateway_auth.Authorization)
    assert found.issued_ms == NOW_MS and len(found.nonce) == gateway_auth.NONCE_BYTES


def test_each_header_has_its_own_nonce() -> None:
    assert signed() != signed()


def test_any_pinned_key_may_sign_during_a_rotation() -> None:
    other = OTHER.public_key().public_bytes_raw()
    verify(signed(), pinned=(other, PUBLIC))


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "gateway_auth_missing"),
        ("", "gateway_auth_missing"),
        ("v1.1.2.3", "gateway_auth_invalid"),
        ("v2" + signed()[2:], "gateway_auth_invalid"),
        (signed().replace(".", ".-", 1), "gateway_auth_invalid"),
        (signed() + "=", "gateway_auth_invalid"),
        (signed() + "x" * 300, "gateway_auth_invalid"),
        (signed(OTHER), "gateway_auth_invalid"),
        (signed(method="GET"), "gateway_auth_invalid"),
        (signed(path="/v1/completions"), "gateway_auth_invalid"),
        (signed(body=b"{}"), "gateway_auth_invalid"),
        (signed(hpke_key_sha256="cd" * 32), "gateway_auth_invalid"),
        (signed(now_ms=NOW_MS - WINDOW_MS - 1), "gateway_auth_stale"),
        (signed(now_ms=NOW_MS + WINDOW_MS + 1), "gateway_auth_stale"),
    ],
    ids=[
        "absent",
        "empty",
        "malformed",
        "another version",
        "a negative time",
        "padded",
        "oversized",
        "another signer",
        "another method",
        "another path",
        "another body",
        "another enclave",
        "too old",
        "from the future",
    ],
)
def test_a_header_not_for_this_request_is_refused_naming_why(value: str | None, kind: str) -> None:
    with pytest.raises(Refused) as refused:
        verify(value)
    assert (refused.value.status, refused.value.kind) == (401, kind)
    assert gateway_auth.HEADER in refused.value.message


def test_nothing_verifies_when_no_key_is_pinned() -> None:
    with pytest.raises(Refused, match="not signed by a gateway key"):
        verify(signed(), pinned=())


def test_the_signature_is_domain_separated() -> None:
    message = gateway_auth.message(*REQUEST, NOW_MS, b"n" * 16, ENCLAVE)
    assert message.startswith(b"teeroute/v1 gateway-request\x00")


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 0),
        (base64.b64encode(PUBLIC).decode(), 1),
        (f" {base64.b64encode(PUBLIC).decode()} ,{base64.b64encode(bytes(32)).decode()}", 2),
    ],
)
def test_pinned_keys_are_comma_separated_base64(text: str, count: int) -> None:
    assert len(gateway_auth.parse_keys(text)) == count


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode()])
def test_pinned_keys_that_are_not_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="Ed25519"):
        gateway_auth.parse_keys(text)
