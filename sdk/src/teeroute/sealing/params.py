"""What a wire v2 session is bound to (`SessionParams`) and the HELLO that carries it.

The transcript is canonical JSON (sorted keys, no spaces), so both ends hash and sign the same
bytes; `from_transcript` accepts only that one form, with every field typed and bounded.

    HELLO payload: enc(32) | u16 transcript length | transcript | [Ed25519 signature(64)]
    signed bytes:  b"teeroute/v2 hello" | enc | transcript
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.sealing.errors import EnvelopeInvalid, OpenFailed

HELLO_LABEL = b"teeroute/v2 hello"
MAX_TRANSCRIPT = 8192
MAX_ATTESTED = 32
MAX_TEXT = 512
ENC_LENGTH = 32
SIGNATURE_LENGTH = 64
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_INTS = ("created_at", "expires_at", "rekey_messages", "rekey_seconds")
_FIELDS = frozenset(
    {"v", "session_id", "enclave_hpke_sha256", "enclave_signing_sha256", "attested", "initiator"}
    | set(_INTS)
)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class SessionParams:
    """The transcript both ends bind into the session's keys."""

    session_id: bytes
    enclave_hpke_sha256: str
    enclave_signing_sha256: str
    attested: Mapping[str, str] = field(hash=False)
    initiator: str
    created_at: int
    expires_at: int
    rekey_messages: int = 1 << 20
    rekey_seconds: int = 300

    def transcript(self) -> bytes:
        return canonical(
            {
                "v": 2,
                "session_id": self.session_id.hex(),
                "enclave_hpke_sha256": self.enclave_hpke_sha256,
                "enclave_signing_sha256": self.enclave_signing_sha256,
                "attested": dict(self.attested),
                "initiator": self.initiator,
                "created_at": self.created_at,
                "expires_at": self.expires_at,
                "rekey_messages": self.rekey_messages,
                "rekey_seconds": self.rekey_seconds,
            }
        )

    @classmethod
    def from_transcript(cls, raw: bytes) -> SessionParams:
        """Reads a transcript; EnvelopeInvalid("session.transcript") names what is wrong."""
        if len(raw) > MAX_TRANSCRIPT:
            raise _bad(f"over {MAX_TRANSCRIPT} bytes")
        doc = _json_object(raw)
        if set(doc) != _FIELDS or doc["v"] != 2:
            raise _bad("expected exactly the v2 session fields")
        params = cls(
            session_id=_session_id(doc["session_id"]),
            enclave_hpke_sha256=_sha256_hex(doc["enclave_hpke_sha256"], "enclave_hpke_sha256"),
            enclave_signing_sha256=_sha256_hex(
                doc["enclave_signing_sha256"], "enclave_signing_sha256"
            ),
            attested=_attested(doc["attested"]),
            initiator=_text(doc["initiator"], "initiator"),
            **{name: _int(doc[name], name) for name in _INTS},
        )
        if params.transcript() != raw:
            raise _bad("not in canonical form")
        return params


def _bad(detail: str) -> EnvelopeInvalid:
    return EnvelopeInvalid("session.transcript", detail)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise _bad("not valid JSON") from None
    if not isinstance(doc, dict):
        raise _bad("expected a JSON object")
    return doc


def _session_id(value: Any) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{32}", value):
        raise _bad("session_id must be 16 bytes in lowercase hex")
    return bytes.fromhex(value)


def _sha256_hex(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise _bad(f"{name} must be a lowercase hex SHA-256")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _bad(f"{name} must be a string of at most {MAX_TEXT} characters")
    return value


def _int(value: Any, name: str) -> int:
    if type(value) is not int or not 0 <= value < 1 << 63:
        raise _bad(f"{name} must be a non-negative integer")
    return value


def _attested(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_ATTESTED:
        raise _bad(f"attested must be an object of at most {MAX_ATTESTED} strings")
    return {_text(k, "attested"): _text(v, "attested") for k, v in value.items()}


@dataclass(frozen=True)
class Hello:
    """A parsed HELLO: the initiator's HPKE `enc`, its params, their transcript bytes and
    the optional signature over `signed_bytes`."""

    enc: bytes
    params: SessionParams
    transcript: bytes
    signature: bytes | None

    @property
    def signed_bytes(self) -> bytes:
        return HELLO_LABEL + self.enc + self.transcript

    @property
    def initiator_key_sha256(self) -> str | None:
        """x of an initiator "gateway:<x>" (whatever x is: a malformed one matches no key);
        None for any other initiator."""
        kind, _, key = self.params.initiator.partition(":")
        return key if kind == "gateway" else None

    def check_signature(self, public: bytes) -> None:
        """OpenFailed("session.signature") unless the raw Ed25519 key `public` signed it."""
        if self.signature is None:
            raise OpenFailed("session.signature", "the hello is not signed")
        if len(public) != 32:
            raise OpenFailed("session.signature", "not a raw Ed25519 public key")
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(public).verify(
                self.signature, self.signed_bytes
            )
        except InvalidSignature:
            raise OpenFailed("session.signature", "the hello's signature does not verify") from None
        if self.initiator_key_sha256 not in (None, hashlib.sha256(public).hexdigest()):
            raise OpenFailed("session.signature", "signed by another key than its initiator")


def parse_hello(payload: bytes) -> Hello:
    """Reads a HELLO payload; EnvelopeInvalid("session.hello") or ("session.transcript")."""
    if len(payload) < ENC_LENGTH + 2:
        raise EnvelopeInvalid("session.hello", "shorter than enc and the transcript length")
    length = int.from_bytes(payload[ENC_LENGTH : ENC_LENGTH + 2], "big")
    end = ENC_LENGTH + 2 + length
    rest = len(payload) - end
    if rest not in (0, SIGNATURE_LENGTH):
        raise EnvelopeInvalid("session.hello", "expected a transcript and at most a signature")
    transcript = payload[ENC_LENGTH + 2 : end]
    params = SessionParams.from_transcript(transcript)
    signature = payload[end:] if rest else None
    return Hello(payload[:ENC_LENGTH], params, transcript, signature)
