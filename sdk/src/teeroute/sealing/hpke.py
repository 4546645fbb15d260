"""RFC 9180 HPKE: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM or ChaCha20-Poly1305.

The one suite sealed mode uses (docs/sealed-mode.md), in modes base and psk, with the secret
exporter, built on `cryptography` primitives: X25519, HMAC-SHA256 for LabeledExtract,
HKDFExpand(SHA-256) for LabeledExpand, and the AESGCM / ChaCha20Poly1305 AEADs.

Why not `cryptography.hazmat.primitives.hpke`: it is single-shot only (one message per
encapsulation, no sequence numbers) and has no secret exporter, and sealed mode derives the
response keys with `export()` from the request's context. The tests check this module against
the RFC 9180 test vectors and against `cryptography`'s implementation in both directions.

Choices:

* Contexts are stateful and follow RFC 9180 section 5.2: the sequence number advances only
  after a successful seal or open, so a reordered, dropped or replayed message fails to open,
  and a failed open does not move the context on.
* Per-message cost is one AEAD call: the AEAD object is built once per context and the nonce
  is `base_nonce XOR seq` computed on integers. Per-context cost is dominated by X25519; the
  hashes of `info` and `psk_id` (constants in practice) are cached.
* Errors name the check that failed and carry no key or content bytes (`errors.py`): a failed
  open is `OpenFailed("hpke.open")`; a public key or `enc` of the wrong length is
  `EnvelopeInvalid`; a low-order X25519 point (all-zero shared secret) is refused as
  `EnvelopeInvalid("hpke.public_key")` by the sender and `OpenFailed("hpke.dh")` by the
  recipient (the `enc` came off the wire).
* The sequence limit is the RFC's: at most 2**96 - 1 messages per context; past it,
  `SealingError("hpke.seq")`.
"""

from __future__ import annotations

import enum
import functools

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from teeroute.sealing.errors import EnvelopeInvalid, OpenFailed, SealingError

KEM_ID = 0x0020  # DHKEM(X25519, HKDF-SHA256)
KDF_ID = 0x0001  # HKDF-SHA256
NONCE_LENGTH = 12  # Nn, both AEADs
MODE_BASE = 0x00
MODE_PSK = 0x01

_NH = 32  # HKDF-SHA256 output length (Nh), also Nsecret of the KEM
_NPK = 32  # X25519 public key / enc length (Npk, Nenc)
_NSK = 32  # X25519 private key length (Nsk)
_MAX_SEQ = (1 << (8 * NONCE_LENGTH)) - 1
_VERSION = b"HPKE-v1"
_KEM_SUITE_ID = b"KEM" + KEM_ID.to_bytes(2, "big")


class Aead(enum.Enum):
    """The AEADs sealed mode accepts; the value is the wire name (`"aead"` in envelopes)."""

    AES_128_GCM = "aes-128-gcm"
    CHACHA20_POLY1305 = "chacha20-poly1305"

    @property
    def aead_id(self) -> int:
        """The RFC 9180 aead_id."""
        return _AEAD_PARAMS[self][0]

    @property
    def key_length(self) -> int:
        """Nk, the AEAD key length in bytes."""
        return _AEAD_PARAMS[self][1]

    @classmethod
    def from_name(cls, name: str) -> Aead:
        """The AEAD for a wire name; `EnvelopeInvalid("aead")` for anything else."""
        try:
            return cls(name)
        except ValueError:
            shown = repr(name[:40]) if isinstance(name, str) else type(name).__name__
            raise EnvelopeInvalid("aead", f"unsupported AEAD {shown}") from None


# aead -> (aead_id, Nk)
_AEAD_PARAMS: dict[Aead, tuple[int, int]] = {
    Aead.AES_128_GCM: (0x0001, 16),
    Aead.CHACHA20_POLY1305: (0x0003, 32),
}


def cipher(aead: Aead, key: bytes) -> AESGCM | ChaCha20Poly1305:
    """The raw AEAD object for `key` (also used by the envelope's response frames)."""
    if len(key) != aead.key_length:
        raise ValueError(f"{aead.value} needs a {aead.key_length}-byte key")
    if aead is Aead.AES_128_GCM:
        return AESGCM(key)
    return ChaCha20Poly1305(key)


# --- labeled HKDF (RFC 9180 section 4) -------------------------------------------------------


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract(salt, ikm) is HMAC-Hash(salt, ikm); an empty salt means Nh zero bytes.
    mac = hmac.HMAC(salt or bytes(_NH), hashes.SHA256())
    mac.update(_VERSION + suite_id + label + ikm)
    return mac.finalize()


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = length.to_bytes(2, "big") + _VERSION + suite_id + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled_info).derive(prk)


# --- DHKEM(X25519, HKDF-SHA256) (RFC 9180 section 4.1) ---------------------------------------


def generate_key_pair() -> tuple[x25519.X25519PrivateKey, bytes]:
    """A fresh X25519 key pair: (private key, raw 32-byte public key)."""
    private = x25519.X25519PrivateKey.generate()
    return private, private.public_key().public_bytes_raw()


def derive_key_pair(ikm: bytes) -> tuple[x25519.X25519PrivateKey, bytes]:
    """RFC 9180 DeriveKeyPair for X25519: (private key, raw 32-byte public key)."""
    dkp_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"dkp_prk", ikm)
    sk = _labeled_expand(_KEM_SUITE_ID, dkp_prk, b"sk", b"", _NSK)
    private = x25519.X25519PrivateKey.from_private_bytes(sk)
    return private, private.public_key().public_bytes_raw()


def _public_key(raw: bytes, check: str) -> x25519.X25519PublicKey:
    if len(raw) != _NPK:
        raise EnvelopeInvalid(check, f"expected {_NPK} bytes, got {len(raw)}")
    return x25519.X25519PublicKey.from_public_bytes(raw)


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    eae_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"eae_prk", dh)
    return _labeled_expand(_KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, _NH)


def _encap(pk_r: bytes, ephemeral: x25519.X25519PrivateKey | None) -> tuple[bytes, bytes]:
    """(shared_secret, enc) for the recipient's raw public key."""
    public = _public_key(pk_r, "hpke.public_key")
    sk_e = ephemeral if ephemeral is not None else x25519.X25519PrivateKey.generate()
    try:
        dh = sk_e.exchange(public)
    except ValueError:  # all-zero output: a low-order point
        raise EnvelopeInvalid("hpke.public_key", "low-order public key") from None
    enc = sk_e.public_key().public_bytes_raw()
    return _extract_and_expand(dh, enc + pk_r), enc


def _decap(enc: bytes, sk_r: x25519.X25519PrivateKey) -> bytes:
    """The shared secret for the sender's `enc`."""
    public = _public_key(enc, "hpke.enc")
    try:
        dh = sk_r.exchange(public)
    except ValueError:  # all-zero output: a low-order point
        raise OpenFailed("hpke.dh", "low-order ephemeral key") from None
    return _extract_and_expand(dh, enc + sk_r.public_key().public_bytes_raw())


# --- key schedule (RFC 9180 section 5.1) -----------------------------------------------------


@functools.cache
def _suite_id(aead: Aead) -> bytes:
    ids = (KEM_ID, KDF_ID, aead.aead_id)
    return b"HPKE" + b"".join(i.to_bytes(2, "big") for i in ids)


@functools.lru_cache(maxsize=64)
def _key_schedule_context(mode: int, suite_id: bytes, info: bytes, psk_id: bytes) -> bytes:
    # Cached: in practice info and psk_id are a handful of constants per process.
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", psk_id)
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    return bytes([mode]) + psk_id_hash + info_hash


class _Schedule:
    """The key schedule's outputs (what the RFC vectors record)."""

    __slots__ = ("base_nonce", "exporter_secret", "key")

    def __init__(
        self, mode: int, aead: Aead, shared_secret: bytes, info: bytes, psk: bytes, psk_id: bytes
    ) -> None:
        if mode == MODE_PSK and not (psk and psk_id):
            raise ValueError("psk mode needs a non-empty psk and psk_id")
        suite_id = _suite_id(aead)
        context = _key_schedule_context(mode, suite_id, bytes(info), bytes(psk_id))
        secret = _labeled_extract(suite_id, shared_secret, b"secret", psk)
        self.key = _labeled_expand(suite_id, secret, b"key", context, aead.key_length)
        self.base_nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, NONCE_LENGTH)
        self.exporter_secret = _labeled_expand(suite_id, secret, b"exp", context, _NH)


# --- contexts (RFC 9180 sections 5.2 and 5.3) ------------------------------------------------


class _Context:
    __slots__ = ("_aead", "_base_nonce", "_cipher", "_nonce_int", "_schedule", "_seq", "_suite_id")

    def __init__(self, aead: Aead, schedule: _Schedule) -> None:
        self._aead = aead
        self._schedule = schedule
        self._suite_id = _suite_id(aead)
        self._cipher = cipher(aead, schedule.key)
        self._nonce_int = int.from_bytes(schedule.base_nonce, "big")
        self._seq = 0

    @property
    def aead(self) -> Aead:
        return self._aead

    @property
    def key(self) -> bytes:
        return self._schedule.key

    @property
    def base_nonce(self) -> bytes:
        return self._schedule.base_nonce

    @property
    def exporter_secret(self) -> bytes:
        return self._schedule.exporter_secret

    @property
    def seq(self) -> int:
        """The sequence number of the next message."""
        return self._seq

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """RFC 9180 secret export: `length` bytes (at most 255 * 32) bound to this context."""
        secret = self._schedule.exporter_secret
        return _labeled_expand(self._suite_id, secret, b"sec", exporter_context, length)

    def _next_nonce(self) -> bytes:
        if self._seq >= _MAX_SEQ:
            raise SealingError("hpke.seq", "message limit reached")
        return (self._nonce_int ^ self._seq).to_bytes(NONCE_LENGTH, "big")


class SenderContext(_Context):
    """The sender's side: seals messages in order."""

    __slots__ = ()

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        ciphertext = self._cipher.encrypt(self._next_nonce(), plaintext, aad)
        self._seq += 1
        return ciphertext

    def __repr__(self) -> str:
        return f"SenderContext(aead={self._aead.value}, seq={self._seq})"


class RecipientContext(_Context):
    """The recipient's side: opens messages in the order they were sealed."""

    __slots__ = ()

    def open(self, ciphertext: bytes, aad: bytes = b"") -> bytes:
        nonce = self._next_nonce()
        try:
            plaintext = self._cipher.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise OpenFailed("hpke.open", "authentication failed") from None
        self._seq += 1
        return plaintext

    def __repr__(self) -> str:
        return f"RecipientContext(aead={self._aead.value}, seq={self._seq})"


# --- setup (RFC 9180 sections 5.1.1 and 5.1.2) -----------------------------------------------


def setup_base_s(
    pk_r: bytes,
    info: bytes,
    aead: Aead = Aead.AES_128_GCM,
    *,
    ephemeral: x25519.X25519PrivateKey | None = None,
) -> tuple[bytes, SenderContext]:
    """Base mode, sender: (enc, context) for the recipient's raw public key `pk_r`.

    `ephemeral` fixes the ephemeral key (test vectors only); by default it is fresh.
    """
    shared_secret, enc = _encap(pk_r, ephemeral)
    schedule = _Schedule(MODE_BASE, aead, shared_secret, info, b"", b"")
    return enc, SenderContext(aead, schedule)


def setup_base_r(
    enc: bytes, sk_r: x25519.X25519PrivateKey, info: bytes, aead: Aead = Aead.AES_128_GCM
) -> RecipientContext:
    """Base mode, recipient: the context for the sender's `enc`."""
    schedule = _Schedule(MODE_BASE, aead, _decap(enc, sk_r), info, b"", b"")
    return RecipientContext(aead, schedule)


def setup_psk_s(
    pk_r: bytes,
    info: bytes,
    psk: bytes,
    psk_id: bytes,
    aead: Aead = Aead.AES_128_GCM,
    *,
    ephemeral: x25519.X25519PrivateKey | None = None,
) -> tuple[bytes, SenderContext]:
    """PSK mode, sender: like `setup_base_s`, also bound to the pre-shared key `psk`."""
    shared_secret, enc = _encap(pk_r, ephemeral)
    schedule = _Schedule(MODE_PSK, aead, shared_secret, info, psk, psk_id)
    return enc, SenderContext(aead, schedule)


def setup_psk_r(
    enc: bytes,
    sk_r: x25519.X25519PrivateKey,
    info: bytes,
    psk: bytes,
    psk_id: bytes,
    aead: Aead = Aead.AES_128_GCM,
) -> RecipientContext:
    """PSK mode, recipient: like `setup_base_r`, also bound to the pre-shared key `psk`."""
    schedule = _Schedule(MODE_PSK, aead, _decap(enc, sk_r), info, psk, psk_id)
    return RecipientContext(aead, schedule)
