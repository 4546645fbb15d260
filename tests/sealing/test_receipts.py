"""Usage receipts: signed by the attested key, bound to one request and one answer."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.sealing import hpke
from teeroute.sealing.envelope import canonical, key_id
from teeroute.sealing.errors import ReceiptInvalid
from teeroute.sealing.receipts import Receipt, parse_receipt, sign_receipt, verify_receipt

RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)


def _keys() -> tuple[ed25519.Ed25519PrivateKey, bytes, bytes]:
    signing = ed25519.Ed25519PrivateKey.generate()
    _, hpke_public = hpke.generate_key_pair()
    return signing, signing.public_key().public_bytes(*RAW), hpke_public


def _receipt(signing: ed25519.Ed25519PrivateKey, public: bytes, hpke_public: bytes) -> Receipt:
    return sign_receipt(
        sign=signing.sign,
        signing_public=public,
        hpke_public=hpke_public,
        request_id="gen-1",
        model="llama",
        served_model="meta-llama/Llama-3-8B",
        input_tokens=12,
        output_tokens=40,
        usage_source="engine",
        status=200,
        complete=True,
        request_sha256="aa" * 32,
        response_sha256="bb" * 32,
        now=NOW,
    )


def _verify(text: str | bytes | dict[str, Any], public: bytes, **expect: str) -> Receipt:
    return verify_receipt(text, signing_key_sha256=key_id(public), **expect)


def test_a_signed_receipt_verifies_against_the_attested_fingerprint() -> None:
    signing, public, hpke_public = _keys()
    receipt = _receipt(signing, public, hpke_public)
    found = _verify(
        receipt.text(),
        public,
        request_id="gen-1",
        request_sha256="aa" * 32,
        response_sha256="bb" * 32,
        hpke_key_sha256=key_id(hpke_public),
    )
    assert found == receipt
    assert found.issued_at == "2026-11-25T10:00:00Z"
    assert json.loads(receipt.text())["v"] == "v1"


def test_a_change_to_any_field_breaks_the_signature() -> None:
    signing, public, hpke_public = _keys()
    doc = _receipt(signing, public, hpke_public).to_json()
    changes: dict[str, Any] = {
        "request_id": "gen-2",
        "model": "other",
        "served_model": "other",
        "input_tokens": 13,
        "output_tokens": 41,
        "usage_source": "counted",
        "status": 500,
        "complete": False,
        "hpke_key_sha256": "cc" * 32,
        "request_sha256": "dd" * 32,
        "response_sha256": "ee" * 32,
        "issued_at": "2026-11-25T10:00:01Z",
    }
    for name, value in changes.items():
        with pytest.raises(ReceiptInvalid) as found:
            _verify({**doc, name: value}, public)
        assert found.value.check == "receipt.signature", name


def test_any_flipped_byte_of_the_receipt_text_is_detected() -> None:
    signing, public, hpke_public = _keys()
    text = _receipt(signing, public, hpke_public).text().encode()
    for i in range(len(text)):
        bad = bytearray(text)
        bad[i] ^= 0x01
        with pytest.raises(ReceiptInvalid):
            _verify(bytes(bad), public)


def test_a_receipt_signed_by_another_key_is_refused() -> None:
    _, public, hpke_public = _keys()
    other, other_public, _ = _keys()
    forged = _receipt(other, other_public, hpke_public)
    with pytest.raises(ReceiptInvalid) as found:
        _verify(forged.text(), public)
    assert found.value.check == "receipt.signing_key"


def test_swapping_in_the_attested_public_key_does_not_help_a_forger() -> None:
    signing, public, hpke_public = _keys()
    other, other_public, _ = _keys()
    forged = _receipt(other, other_public, hpke_public).to_json()
    forged["signing_key"] = _receipt(signing, public, hpke_public).signing_key
    forged["signing_key_sha256"] = key_id(public)
    with pytest.raises(ReceiptInvalid) as found:
        _verify(forged, public)
    assert found.value.check == "receipt.signature"


@pytest.mark.parametrize(
    ("expect", "check"),
    [
        ({"request_id": "gen-9"}, "receipt.request_id"),
        ({"request_sha256": "ff" * 32}, "receipt.request"),
        ({"response_sha256": "ff" * 32}, "receipt.response"),
        ({"hpke_key_sha256": "ff" * 32}, "receipt.hpke_key"),
    ],
)
def test_a_receipt_for_another_request_or_answer_is_refused(
    expect: dict[str, str], check: str
) -> None:
    signing, public, hpke_public = _keys()
    text = _receipt(signing, public, hpke_public).text()
    with pytest.raises(ReceiptInvalid) as found:
        _verify(text, public, **expect)
    assert found.value.check == check


@pytest.mark.parametrize(
    "change",
    [
        {"v": "v2"},
        {"input_tokens": -1},
        {"output_tokens": 1.5},
        {"output_tokens": True},
        {"usage_source": "guessed"},
        {"status": "200"},
        {"complete": 1},
        {"model": "x" * 300},
        {"surprise": 1},
    ],
)
def test_malformed_receipts_fail_the_format_check(change: dict[str, Any]) -> None:
    signing, public, hpke_public = _keys()
    doc = {**_receipt(signing, public, hpke_public).to_json(), **change}
    with pytest.raises(ReceiptInvalid) as found:
        parse_receipt(doc)
    assert found.value.check == "receipt.format"


@pytest.mark.parametrize("raw", [b"not json", b"[]", b"\xff\xfe"])
def test_unreadable_receipts_fail_the_format_check(raw: bytes) -> None:
    with pytest.raises(ReceiptInvalid) as found:
        parse_receipt(raw)
    assert found.value.check == "receipt.format"


def test_the_signature_covers_a_domain_separated_canonical_form() -> None:
    signing, public, hpke_public = _keys()
    receipt = _receipt(signing, public, hpke_public)
    body = {k: v for k, v in receipt.to_json().items() if k != "signature"}
    assert receipt.signed_part() == b"teeroute/v1 receipt\x00" + canonical(body)
