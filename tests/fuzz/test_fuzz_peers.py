"""Fuzzing what else a peer sends: the v1 sealed envelope and its SSE frames, the gateway's
authorization header, signed admission records, and server-sent events cut anywhere.

Property: any input ends in a result or the module's typed error (SealingError, Refused,
RecordInvalid, EventTooLarge), never another exception; a mutated signed or sealed input is
accepted only if unchanged; the event splitter's output and rest add up to its input."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from functools import partial
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from teeroute import admission_record
from teeroute.admission_record import AdmissionRecord, RecordInvalid
from teeroute.sealing import envelope, gateway_auth
from teeroute.sealing.errors import SealingError
from teeroute.wire import EventSplitter, EventTooLarge

from . import budget
from .json_values import VALUES, changed, deep
from .mutate import inputs, mutated, typed
from .sealing_inputs import ENCLAVE_PRIVATE, ENCLAVE_PUBLIC, GATEWAY_KEY, GATEWAY_PUBLIC

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(budget.TIMEOUT_S)]

# -- the v1 sealed envelope ------------------------------------------------------------------

SEALED, OPENER = envelope.seal_request(ENCLAVE_PUBLIC, {"path": "/v1/chat/completions"}, b"{}")
SEALED_BYTES = SEALED.to_bytes()
_, SEALER = envelope.open_request(SEALED, ENCLAVE_PRIVATE, ENCLAVE_PUBLIC)
FRAMES = SEALER.frame(b"hello") + SEALER.frame(b"world", final=True)


@budget.budget()
@given(
    st.one_of(
        inputs(SEALED_BYTES),
        deep(),
        changed(json.loads(SEALED_BYTES)).map(lambda d: json.dumps(d).encode()),
    )
)
def test_a_mutated_v1_request_opens_only_if_unchanged(raw: bytes) -> None:
    sealed = typed(lambda: envelope.SealedRequest.parse(raw), SealingError)
    if not isinstance(sealed, envelope.SealedRequest):
        return
    opened = typed(
        lambda: envelope.open_request(sealed, ENCLAVE_PRIVATE, ENCLAVE_PUBLIC), SealingError
    )
    if isinstance(opened, tuple):
        assert (sealed.aad, sealed.enc, sealed.ciphertext) == (
            SEALED.aad,
            SEALED.enc,
            SEALED.ciphertext,
        )


@budget.budget()
@given(inputs(FRAMES))
def test_mutated_v1_response_frames_open_only_if_unchanged(raw: bytes) -> None:
    opener = envelope.seal_request(ENCLAVE_PUBLIC, {}, b"")[1]  # another context: nothing opens
    reader = envelope.FrameReader()
    events = typed(lambda: list(reader.feed(raw)), SealingError)
    for event in events if isinstance(events, list) else []:
        ciphertext = typed(partial(envelope.frame_ciphertext, event), SealingError)
        if isinstance(ciphertext, bytes):
            assert not isinstance(typed(partial(opener.open, ciphertext), SealingError), bytes)


# -- the gateway's authorization -------------------------------------------------------------

HPKE_SHA = hashlib.sha256(ENCLAVE_PUBLIC).hexdigest()
NOW_MS = 1_800_000_000_000
HEADER = gateway_auth.sign(GATEWAY_KEY, "POST", "/v1/chat/completions", b"{}", HPKE_SHA, NOW_MS)


@budget.budget()
@given(st.one_of(inputs(HEADER.encode()).map(lambda b: b.decode("latin-1")), st.text(max_size=300)))
def test_a_mutated_gateway_authorization_passes_only_if_unchanged(value: str) -> None:
    typed(lambda: gateway_auth.parse(value), gateway_auth.Refused)
    verified = typed(
        lambda: gateway_auth.verify(
            value, [GATEWAY_PUBLIC], "POST", "/v1/chat/completions", b"{}", HPKE_SHA, NOW_MS, 60_000
        ),
        gateway_auth.Refused,
    )
    if isinstance(verified, gateway_auth.Authorization):
        assert gateway_auth.parse(value) == gateway_auth.parse(HEADER)


# -- admission records -----------------------------------------------------------------------

OPERATOR = ed25519.Ed25519PrivateKey.generate()
OPERATOR_PUBLIC = OPERATOR.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
POOL = "miners/pool-a"
RECORD = AdmissionRecord(
    pool=POOL, endpoint="pod-0", url="http://10.0.0.7:8443", tee="sev-snp",
    measurement="ab" * 48, chip_id="cd" * 64,
    hpke_public_key=base64.b64encode(ENCLAVE_PUBLIC).decode(),
    signing_public_key=base64.b64encode(GATEWAY_PUBLIC).decode(),
    attested_at=dt.datetime(2026, 12, 5, 1, tzinfo=dt.UTC),
    expires_at=dt.datetime(2026, 12, 5, 2, tzinfo=dt.UTC),
)  # fmt: skip
TOKEN = admission_record.sign(RECORD, OPERATOR.sign)


@budget.budget()
@given(st.one_of(inputs(TOKEN.encode()).map(lambda b: b.decode("latin-1")), st.text(max_size=200)))
def test_a_mutated_admission_record_verifies_only_if_it_says_the_same(token: str) -> None:
    record = typed(
        lambda: admission_record.verify(token, OPERATOR_PUBLIC, pool=POOL), RecordInvalid
    )
    if isinstance(record, AdmissionRecord):
        assert record == RECORD


def _signed_token(body: bytes) -> str:
    signature = OPERATOR.sign(admission_record.SIGNATURE_CONTEXT + body)
    b64 = base64.urlsafe_b64encode
    return f"{b64(body).rstrip(b'=').decode()}.{b64(signature).rstrip(b'=').decode()}"


_RECORD_DOC = RECORD.to_json()


@budget.budget(budget.SHAPES)
@given(
    st.one_of(
        deep(2500),
        changed(_RECORD_DOC).map(lambda d: json.dumps(d).encode()),
        VALUES.map(lambda v: json.dumps(v).encode()),
    )
)
def test_an_operator_signed_body_of_any_shape_raises_only_record_invalid(body: bytes) -> None:
    """The operator's own key signs it: what a compromised or buggy operator could publish."""
    typed(
        lambda: admission_record.verify(_signed_token(body), OPERATOR_PUBLIC, pool=POOL),
        RecordInvalid,
    )


@budget.budget(budget.SHAPES)
@given(
    st.one_of(
        deep(), st.text(max_size=200).map(str.encode), VALUES.map(lambda v: json.dumps(v).encode())
    )
)
def test_a_records_annotation_of_any_shape_reads_as_a_list(raw: bytes) -> None:
    tokens = admission_record.load_list(raw.decode("utf-8", "replace"))
    assert isinstance(tokens, list)
    warned: list[str] = []
    admission_record.verify_all(tokens, OPERATOR_PUBLIC, pool=POOL, warn=warned.append)


# -- server-sent events ----------------------------------------------------------------------

EVENTS = b"event: sealed\ndata: AAAA\n\nevent: receipt\ndata: {}\r\n\r\ndata: x\n\n"


@budget.budget()
@given(
    st.lists(st.one_of(mutated(EVENTS), st.binary(max_size=40)), max_size=8),
    st.booleans(),
    st.integers(1, 96),
)
def test_the_event_splitter_loses_nothing_and_holds_at_most_its_bound(
    pieces: list[bytes], crlf: bool, bound: int
) -> None:
    splitter, out = EventSplitter(bound, crlf=crlf), b""
    for piece in pieces:
        ready: Any = typed(partial(splitter.feed, piece), EventTooLarge)
        if isinstance(ready, EventTooLarge):
            return
        out += ready
        assert splitter.pending_size <= bound
    assert out + splitter.pending == b"".join(pieces)
