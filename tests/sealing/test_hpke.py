"""RFC 9180 HPKE: the RFC's test vectors, tampering, round trips, interop with `cryptography`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives import hpke as crypto_hpke
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from teeroute.sealing import hpke
from teeroute.sealing.errors import EnvelopeInvalid, OpenFailed, SealingError
from teeroute.sealing.hpke import Aead

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "rfc9180.json").read_text()
)
AEADS = list(Aead)
INFO = b"teeroute/v1 request"
PSK = b"0123456789abcdef0123456789abcdef"
PSK_ID = b"psk-1"
MODE_NAMES = {0: "base", 1: "psk"}
CRYPTO_AEADS = {
    Aead.AES_128_GCM: crypto_hpke.AEAD.AES_128_GCM,
    Aead.CHACHA20_POLY1305: crypto_hpke.AEAD.CHACHA20_POLY1305,
}
# Low-order / non-canonical low-order X25519 points: each makes the DH output all zero.
LOW_ORDER_POINTS = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    b"\xec" + b"\xff" * 30 + b"\x7f",
    b"\xed" + b"\xff" * 30 + b"\x7f",
    b"\xee" + b"\xff" * 30 + b"\x7f",
]


def _vector_id(vector: dict[str, Any]) -> str:
    return f"{MODE_NAMES[vector['mode']]}-{_aead_of(vector).value}"


def _aead_of(vector: dict[str, Any]) -> Aead:
    return {0x0001: Aead.AES_128_GCM, 0x0003: Aead.CHACHA20_POLY1305}[vector["aead_id"]]


def _hex(vector: dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(vector[name])


def _sender(vector: dict[str, Any]) -> tuple[bytes, hpke.SenderContext]:
    ephemeral = x25519.X25519PrivateKey.from_private_bytes(_hex(vector, "skEm"))
    pk_r, info, aead = _hex(vector, "pkRm"), _hex(vector, "info"), _aead_of(vector)
    if vector["mode"] == 0:
        return hpke.setup_base_s(pk_r, info, aead, ephemeral=ephemeral)
    psk, psk_id = _hex(vector, "psk"), _hex(vector, "psk_id")
    return hpke.setup_psk_s(pk_r, info, psk, psk_id, aead, ephemeral=ephemeral)


def _recipient(vector: dict[str, Any]) -> hpke.RecipientContext:
    sk_r = x25519.X25519PrivateKey.from_private_bytes(_hex(vector, "skRm"))
    enc, info, aead = _hex(vector, "enc"), _hex(vector, "info"), _aead_of(vector)
    if vector["mode"] == 0:
        return hpke.setup_base_r(enc, sk_r, info, aead)
    return hpke.setup_psk_r(enc, sk_r, info, _hex(vector, "psk"), _hex(vector, "psk_id"), aead)


vector_params = pytest.mark.parametrize("vector", VECTORS, ids=_vector_id)


# --- the RFC 9180 vectors --------------------------------------------------------------------


def test_vectors_cover_the_suite() -> None:
    assert sorted(_vector_id(v) for v in VECTORS) == sorted(
        f"{mode}-{aead.value}" for mode in ("base", "psk") for aead in Aead
    )
    for vector in VECTORS:
        assert (vector["kem_id"], vector["kdf_id"]) == (hpke.KEM_ID, hpke.KDF_ID)
        assert vector["aead_id"] == _aead_of(vector).aead_id
        assert len(vector["encryptions"]) > 256  # the sequence number crosses a byte boundary


@vector_params
@pytest.mark.parametrize("who", ["R", "E"])
def test_derive_key_pair(vector: dict[str, Any], who: str) -> None:
    private, public = hpke.derive_key_pair(_hex(vector, f"ikm{who}"))
    assert private.private_bytes_raw() == _hex(vector, f"sk{who}m")
    assert public == _hex(vector, f"pk{who}m")


@vector_params
def test_sender_key_schedule(vector: dict[str, Any]) -> None:
    enc, ctx = _sender(vector)
    assert enc == _hex(vector, "enc")
    assert ctx.aead is _aead_of(vector)
    assert ctx.key == _hex(vector, "key")
    assert ctx.base_nonce == _hex(vector, "base_nonce")
    assert ctx.exporter_secret == _hex(vector, "exporter_secret")
    assert ctx.seq == 0


@vector_params
def test_recipient_key_schedule(vector: dict[str, Any]) -> None:
    ctx = _recipient(vector)
    assert ctx.key == _hex(vector, "key")
    assert ctx.base_nonce == _hex(vector, "base_nonce")
    assert ctx.exporter_secret == _hex(vector, "exporter_secret")


@vector_params
def test_sender_encryptions(vector: dict[str, Any]) -> None:
    _, ctx = _sender(vector)
    base_nonce = int.from_bytes(ctx.base_nonce, "big")
    for seq, encryption in enumerate(vector["encryptions"]):
        assert ctx.seq == seq
        assert (base_nonce ^ seq).to_bytes(12, "big") == _hex(encryption, "nonce")
        assert ctx.seal(_hex(encryption, "pt"), _hex(encryption, "aad")) == _hex(encryption, "ct")


@vector_params
def test_recipient_opens_every_encryption(vector: dict[str, Any]) -> None:
    ctx = _recipient(vector)
    for seq, encryption in enumerate(vector["encryptions"]):
        assert ctx.seq == seq
        assert ctx.open(_hex(encryption, "ct"), _hex(encryption, "aad")) == _hex(encryption, "pt")


@vector_params
def test_exports(vector: dict[str, Any]) -> None:
    _, sender = _sender(vector)
    recipient = _recipient(vector)
    for export in vector["exports"]:
        context, length = _hex(export, "exporter_context"), export["L"]
        assert sender.export(context, length) == _hex(export, "exported_value")
        assert recipient.export(context, length) == _hex(export, "exported_value")


# --- tampering, ordering, wrong keys ---------------------------------------------------------


def _flips(data: bytes) -> list[bytes]:
    """Every single-bit flip of every byte of `data`."""
    return [
        data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :]
        for i in range(len(data))
        for bit in range(8)
    ]


@pytest.fixture(scope="module")
def recipient_key() -> tuple[x25519.X25519PrivateKey, bytes]:
    return hpke.generate_key_pair()


@pytest.mark.parametrize("aead", AEADS)
def test_tampered_enc_fails(
    aead: Aead, recipient_key: tuple[x25519.X25519PrivateKey, bytes]
) -> None:
    sk_r, pk_r = recipient_key
    enc, sender = hpke.setup_base_s(pk_r, INFO, aead)
    ciphertext = sender.seal(b"short message", b"aad")
    for bad_enc in _flips(enc):  # includes bit 255, which X25519 itself ignores
        with pytest.raises(OpenFailed):
            hpke.setup_base_r(bad_enc, sk_r, INFO, aead).open(ciphertext, b"aad")
    assert hpke.setup_base_r(enc, sk_r, INFO, aead).open(ciphertext, b"aad") == b"short message"


@pytest.mark.parametrize("aead", AEADS)
def test_tampered_ciphertext_or_aad_fails(
    aead: Aead, recipient_key: tuple[x25519.X25519PrivateKey, bytes]
) -> None:
    sk_r, pk_r = recipient_key
    enc, sender = hpke.setup_base_s(pk_r, INFO, aead)
    ciphertext = sender.seal(b"short message", b"aad")
    recipient = hpke.setup_base_r(enc, sk_r, INFO, aead)
    bad = [(c, b"aad") for c in _flips(ciphertext)] + [(ciphertext, a) for a in _flips(b"aad")]
    bad += [(ciphertext, b""), (ciphertext, b"aad\x00"), (ciphertext[:-1], b"aad"), (b"", b"aad")]
    for bad_ciphertext, bad_aad in bad:
        with pytest.raises(OpenFailed) as caught:
            recipient.open(bad_ciphertext, bad_aad)
        assert (caught.value.check, caught.value.detail) == ("hpke.open", "authentication failed")
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        assert recipient.seq == 0  # a failed open does not move the context on
    assert recipient.open(ciphertext, b"aad") == b"short message"


@pytest.mark.parametrize("aead", AEADS)
def test_out_of_order_and_replay_fail(
    aead: Aead, recipient_key: tuple[x25519.X25519PrivateKey, bytes]
) -> None:
    sk_r, pk_r = recipient_key
    enc, sender = hpke.setup_base_s(pk_r, INFO, aead)
    messages = [sender.seal(f"message {i}".encode()) for i in range(3)]
    recipient = hpke.setup_base_r(enc, sk_r, INFO, aead)
    with pytest.raises(OpenFailed):
        recipient.open(messages[1])  # skipped message 0
    assert recipient.open(messages[0]) == b"message 0"
    with pytest.raises(OpenFailed):
        recipient.open(messages[0])  # replay: now at seq 1
    with pytest.raises(OpenFailed):
        recipient.open(messages[2])  # dropped message 1
    assert recipient.open(messages[1]) == b"message 1"
    assert recipient.open(messages[2]) == b"message 2"
    assert recipient.seq == 3


@pytest.mark.parametrize("aead", AEADS)
def test_wrong_info_key_or_aead_fails(
    aead: Aead, recipient_key: tuple[x25519.X25519PrivateKey, bytes]
) -> None:
    sk_r, pk_r = recipient_key
    enc, sender = hpke.setup_base_s(pk_r, INFO, aead)
    ciphertext = sender.seal(b"secret")
    other_sk, _ = hpke.generate_key_pair()
    other_aead = next(a for a in Aead if a is not aead)
    attempts = [
        hpke.setup_base_r(enc, sk_r, b"teeroute/v1 other", aead),
        hpke.setup_base_r(enc, other_sk, INFO, aead),
        hpke.setup_base_r(enc, sk_r, INFO, other_aead),
        hpke.setup_psk_r(enc, sk_r, INFO, PSK, PSK_ID, aead),
    ]
    for recipient in attempts:
        with pytest.raises(OpenFailed):
            recipient.open(ciphertext)


@pytest.mark.parametrize("aead", AEADS)
def test_psk_mismatch_fails(
    aead: Aead, recipient_key: tuple[x25519.X25519PrivateKey, bytes]
) -> None:
    sk_r, pk_r = recipient_key
    enc, sender = hpke.setup_psk_s(pk_r, INFO, PSK, PSK_ID, aead)
    ciphertext = sender.seal(b"secret")
    attempts = [
        hpke.setup_psk_r(enc, sk_r, INFO, PSK[::-1], PSK_ID, aead),
        hpke.setup_psk_r(enc, sk_r, INFO, PSK, b"psk-2", aead),
        hpke.setup_base_r(enc, sk_r, INFO, aead),
    ]
    for recipient in attempts:
        with pytest.raises(OpenFailed):
            recipient.open(ciphertext)
    assert hpke.setup_psk_r(enc, sk_r, INFO, PSK, PSK_ID, aead).open(ciphertext) == b"secret"


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("aead", AEADS)
@pytest.mark.parametrize("size", [0, 1, 1024, 1 << 20], ids=["empty", "1B", "1KiB", "1MiB"])
def test_round_trip(aead: Aead, size: int) -> None:
    sk_r, pk_r = hpke.generate_key_pair()
    plaintext = bytes(i % 251 for i in range(size))
    enc, sender = hpke.setup_base_s(pk_r, INFO, aead)
    recipient = hpke.setup_base_r(enc, sk_r, INFO, aead)
    for aad in (b"", b"aad"):
        ciphertext = sender.seal(plaintext, aad)
        assert len(ciphertext) == size + 16
        assert recipient.open(ciphertext, aad) == plaintext
    assert sender.export(b"teeroute/v1 response key", aead.key_length) == recipient.export(
        b"teeroute/v1 response key", aead.key_length
    )
    assert len(recipient.export(b"x", aead.key_length)) == aead.key_length


@pytest.mark.parametrize("aead", AEADS)
def test_psk_round_trip(aead: Aead) -> None:
    sk_r, pk_r = hpke.generate_key_pair()
    enc, sender = hpke.setup_psk_s(pk_r, INFO, PSK, PSK_ID, aead)
    recipient = hpke.setup_psk_r(enc, sk_r, INFO, PSK, PSK_ID, aead)
    assert recipient.open(sender.seal(b"hello", b"aad"), b"aad") == b"hello"
    assert sender.export(b"", 32) == recipient.export(b"", 32)


def test_each_setup_uses_a_fresh_ephemeral_key() -> None:
    _, pk_r = hpke.generate_key_pair()
    enc_1, sender_1 = hpke.setup_base_s(pk_r, INFO)
    enc_2, sender_2 = hpke.setup_base_s(pk_r, INFO)
    assert enc_1 != enc_2
    assert sender_1.seal(b"same") != sender_2.seal(b"same")


def test_exports_differ_by_context_and_length() -> None:
    _, pk_r = hpke.generate_key_pair()
    _, sender = hpke.setup_base_s(pk_r, INFO)
    key = sender.export(b"teeroute/v1 response key", 16)
    nonce = sender.export(b"teeroute/v1 response nonce", 12)
    assert key != sender.export(b"teeroute/v1 response nonce", 16)
    assert nonce != key[:12]
    assert len(sender.export(b"", 255 * 32)) == 255 * 32
    with pytest.raises(ValueError):
        sender.export(b"", 255 * 32 + 1)


# --- interop with cryptography's HPKE (single shot: enc || ct) -------------------------------


def _suite(aead: Aead) -> crypto_hpke.Suite:
    return crypto_hpke.Suite(
        crypto_hpke.KEM.X25519, crypto_hpke.KDF.HKDF_SHA256, CRYPTO_AEADS[aead]
    )


@pytest.mark.parametrize("aead", AEADS)
@pytest.mark.parametrize("aad", [b"", b"teeroute aad"], ids=["no-aad", "aad"])
def test_interop_cryptography_seals_we_open(aead: Aead, aad: bytes) -> None:
    sk_r, _ = hpke.generate_key_pair()
    plaintext = b"sealed by cryptography"
    if aad:
        sealed = rust_openssl.hpke._encrypt_with_aad(
            _suite(aead), plaintext, sk_r.public_key(), INFO, aad
        )
    else:
        sealed = _suite(aead).encrypt(plaintext, sk_r.public_key(), INFO)
    assert len(sealed) == 32 + len(plaintext) + 16  # enc || ct
    recipient = hpke.setup_base_r(sealed[:32], sk_r, INFO, aead)
    assert recipient.open(sealed[32:], aad) == plaintext


@pytest.mark.parametrize("aead", AEADS)
@pytest.mark.parametrize("aad", [b"", b"teeroute aad"], ids=["no-aad", "aad"])
def test_interop_we_seal_cryptography_opens(aead: Aead, aad: bytes) -> None:
    sk_r, pk_r = hpke.generate_key_pair()
    enc, sender = hpke.setup_base_s(pk_r, INFO, aead)
    sealed = enc + sender.seal(b"sealed by teeroute", aad)
    if aad:
        opened = rust_openssl.hpke._decrypt_with_aad(_suite(aead), sealed, sk_r, INFO, aad)
    else:
        opened = _suite(aead).decrypt(sealed, sk_r, INFO)
    assert opened == b"sealed by teeroute"


# --- malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 31, 33])
def test_malformed_enc(length: int, recipient_key: tuple[x25519.X25519PrivateKey, bytes]) -> None:
    sk_r, _ = recipient_key
    with pytest.raises(EnvelopeInvalid) as caught:
        hpke.setup_base_r(bytes(range(length)), sk_r, INFO)
    assert caught.value.check == "hpke.enc"
    with pytest.raises(EnvelopeInvalid) as caught:
        hpke.setup_psk_r(bytes(range(length)), sk_r, INFO, PSK, PSK_ID)
    assert caught.value.check == "hpke.enc"


@pytest.mark.parametrize("length", [0, 31, 33])
def test_malformed_public_key(length: int) -> None:
    with pytest.raises(EnvelopeInvalid) as caught:
        hpke.setup_base_s(bytes(range(length)), INFO)
    assert caught.value.check == "hpke.public_key"
    with pytest.raises(EnvelopeInvalid) as caught:
        hpke.setup_psk_s(bytes(range(length)), INFO, PSK, PSK_ID)
    assert caught.value.check == "hpke.public_key"


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_low_order_point_as_public_key(point: bytes) -> None:
    with pytest.raises(EnvelopeInvalid) as caught:
        hpke.setup_base_s(point, INFO)
    assert caught.value.check == "hpke.public_key"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_low_order_point_as_enc(
    point: bytes, recipient_key: tuple[x25519.X25519PrivateKey, bytes]
) -> None:
    sk_r, _ = recipient_key
    with pytest.raises(OpenFailed) as caught:
        hpke.setup_base_r(point, sk_r, INFO)
    assert caught.value.check == "hpke.dh"
    with pytest.raises(OpenFailed):
        hpke.setup_psk_r(point, sk_r, INFO, PSK, PSK_ID)


def test_psk_mode_needs_psk_and_psk_id() -> None:
    sk_r, pk_r = hpke.generate_key_pair()
    enc, _ = hpke.setup_base_s(pk_r, INFO)
    for psk, psk_id in ((b"", PSK_ID), (PSK, b""), (b"", b"")):
        with pytest.raises(ValueError):
            hpke.setup_psk_s(pk_r, INFO, psk, psk_id)
        with pytest.raises(ValueError):
            hpke.setup_psk_r(enc, sk_r, INFO, psk, psk_id)


def test_sequence_limit(recipient_key: tuple[x25519.X25519PrivateKey, bytes]) -> None:
    sk_r, pk_r = recipient_key
    enc, sender = hpke.setup_base_s(pk_r, INFO)
    recipient = hpke.setup_base_r(enc, sk_r, INFO)
    last = (1 << 96) - 2
    sender._seq = recipient._seq = last  # reaching it for real takes 2**96 messages
    assert recipient.open(sender.seal(b"last")) == b"last"
    with pytest.raises(SealingError) as sealing:
        sender.seal(b"one more")
    with pytest.raises(SealingError) as opening:
        recipient.open(b"\x00" * 16)
    for caught in (sealing, opening):
        assert (caught.value.check, caught.value.detail) == ("hpke.seq", "message limit reached")
    assert sender.seq == recipient.seq == last + 1


# --- Aead and cipher -------------------------------------------------------------------------


def test_aead_parameters() -> None:
    assert (Aead.AES_128_GCM.aead_id, Aead.AES_128_GCM.key_length) == (0x0001, 16)
    assert (Aead.CHACHA20_POLY1305.aead_id, Aead.CHACHA20_POLY1305.key_length) == (0x0003, 32)
    assert Aead.from_name("aes-128-gcm") is Aead.AES_128_GCM
    assert Aead.from_name("chacha20-poly1305") is Aead.CHACHA20_POLY1305
    assert hpke.NONCE_LENGTH == 12


@pytest.mark.parametrize("name", ["nope", "AES-128-GCM", "aes-256-gcm", ""])
def test_aead_from_unknown_name(name: str) -> None:
    with pytest.raises(EnvelopeInvalid) as caught:
        Aead.from_name(name)
    assert caught.value.check == "aead"
    assert caught.value.detail == f"unsupported AEAD {name!r}"


def test_cipher() -> None:
    assert isinstance(hpke.cipher(Aead.AES_128_GCM, bytes(16)), AESGCM)
    assert isinstance(hpke.cipher(Aead.CHACHA20_POLY1305, bytes(32)), ChaCha20Poly1305)
    with pytest.raises(ValueError):
        hpke.cipher(Aead.AES_128_GCM, bytes(32))  # AES-256 is not the suite
    with pytest.raises(ValueError):
        hpke.cipher(Aead.CHACHA20_POLY1305, bytes(16))


@pytest.mark.parametrize("aead", AEADS)
def test_cipher_matches_the_context(aead: Aead) -> None:
    _, pk_r = hpke.generate_key_pair()
    _, sender = hpke.setup_base_s(pk_r, INFO, aead)
    ciphertext = sender.seal(b"hello", b"aad")
    raw = hpke.cipher(aead, sender.key)
    assert raw.decrypt(sender.base_nonce, ciphertext, b"aad") == b"hello"
