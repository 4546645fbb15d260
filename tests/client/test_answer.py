"""Reading a sealed answer (wire v2): every way a hostile gateway or host could cut, reorder,
replay, splice or relabel the answer, or its receipt, is caught and named; a receipt is
accepted only with our session's tag and for exactly this request and answer."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from teeroute.client.attest import Attestor
from teeroute.client.errors import (
    ResponseInvalid,
)
from teeroute.client.policy import ClientPolicy
from teeroute.client.session import (
    SealedReader,
    request_meta,
    sealed_meta,
)
from teeroute.sealing import frames
from teeroute.sealing.errors import OpenFailed, ReceiptInvalid, SealingError
from teeroute.sealing.receipt_mac import CLIENT_TAG, GATEWAY_TAG, parse_receipt, receipt_frame
from teeroute.sealing.session import Session

from .fakes import (
    CHAT,
    GATEWAY_RECEIPT_KEY,
    MODEL,
    Chip,
    FakeEnclave,
    FakeGateway,
    Tamper,
    body,
    client_for,
    engine_answer,
)

# --- a hostile path between us and the enclave --------------------------------------------


def failing(chip: Chip, policy: ClientPolicy, tamper: Tamper, **options: Any) -> SealingError:
    gateway = FakeGateway([FakeEnclave(chip)], tamper=tamper)
    answer = client_for(gateway, policy, **options).request(CHAT, body(stream=True))
    with pytest.raises(SealingError) as raised:
        answer.read()
    assert answer.receipt is None
    return raised.value


CUTS: list[tuple[Tamper, str]] = [
    (lambda p: p[:-2] + p[-1:], "response.truncated"),  # final chunk dropped
    (lambda p: p[:3], "response.truncated"),  # cut mid-stream
    (lambda p: p[:-1], "receipt.missing"),
    (lambda p: [p[1], p[0], *p[2:]], "chunk.order"),  # reordered
    (lambda p: [p[0], p[0], *p[1:]], "session.replay"),  # replayed
    (lambda p: [p[0], *p[2:]], "chunk.order"),  # dropped
    (lambda p: [*p[:-1], p[-2], p[-1]], "chunk.final"),  # a chunk after the final one
    (lambda p: [*p, p[-1]], "receipt.format"),  # two receipts
    (lambda p: [*p[:-2], p[-1], p[-2]], "response.truncated"),  # receipt before the final
    (lambda p: [*p, p[0]], "frame.order"),  # a chunk after the receipt
    (lambda p: [*p[:-1], p[-1][:-5]], "response.truncated"),  # cut inside the receipt
]


@pytest.mark.parametrize(("tamper", "check"), CUTS)
@pytest.mark.parametrize("one_shot", [False, True])
def test_cut_reordered_or_replayed_chunks_are_caught(
    chip: Chip, policy: ClientPolicy, tamper: Tamper, check: str, one_shot: bool
) -> None:
    assert failing(chip, policy, tamper, one_shot=one_shot).check == check


def flip(frame: bytes, at: int = -1) -> bytes:
    raw = bytearray(frame)
    raw[at] ^= 1
    return bytes(raw)


def test_an_altered_chunk_fails_to_open(chip: Chip, policy: ClientPolicy) -> None:
    error = failing(chip, policy, lambda p: [flip(p[0]), *p[1:]])
    assert isinstance(error, OpenFailed)
    assert error.check == "session.open"


def test_v1_bytes_in_a_v2_answer_are_refused(chip: Chip, policy: ClientPolicy) -> None:
    error = failing(chip, policy, lambda p: [b"event: sealed\ndata: AAAA\n\n", *p])
    assert error.check == "frame.version"


def test_an_error_frame_in_the_answer_is_named(chip: Chip, policy: ClientPolicy) -> None:
    error_frame = frames.encode(frames.FrameType.ERROR, b'{"type":"engine_error","message":"x"}')
    error = failing(chip, policy, lambda p: [p[0], error_frame])
    assert error.check == "response.error"
    assert "engine_error" in str(error)


def test_a_hello_not_answered_with_a_welcome_is_refused(chip: Chip, policy: ClientPolicy) -> None:
    def swapped(welcome: bytes) -> bytes:
        return frames.encode(frames.FrameType.CHUNK, frames.decode_one(welcome).payload)

    gateway = FakeGateway([FakeEnclave(chip)], welcome_tamper=swapped)
    with pytest.raises(ResponseInvalid) as raised:
        client_for(gateway, policy).request(CHAT, body())
    assert raised.value.check == "session.welcome"
    assert gateway.inference == []


def retag(key: bytes | None, **fields: object) -> Tamper:
    """The receipt with `fields` changed and tags made again: kind 1 with the gateway's key
    (which a gateway has), kind 2 with `key` (None: no kind 2 tag at all)."""

    def tamper(parts: list[bytes]) -> list[bytes]:
        receipt, _ = parse_receipt(frames.decode_one(parts[-1]).payload)
        doc = {**json.loads(receipt.body), **fields}
        doc.pop("v")
        keys = [(GATEWAY_TAG, GATEWAY_RECEIPT_KEY)]
        if key is not None:
            keys.append((CLIENT_TAG, key))
        return [*parts[:-1], receipt_frame(doc, keys)]

    return tamper


@pytest.mark.parametrize(
    ("tamper", "check"),
    [
        (retag(GATEWAY_RECEIPT_KEY, output_tokens=1), "receipt.mac"),  # relabelled, the
        (retag(GATEWAY_RECEIPT_KEY, input_tokens=10**6), "receipt.mac"),  # gateway's key
        (retag(GATEWAY_RECEIPT_KEY), "receipt.mac"),  # not our session's key
        (retag(None), "receipt.mac"),  # no client tag
        (retag(bytes(32), output_tokens=1), "receipt.mac"),
        (lambda p: [*p[:-1], flip(p[-1])], "receipt.mac"),  # the client tag altered
        (lambda p: [*p[:-1], flip(p[-1], 12)], "receipt.format"),  # the body altered
    ],
)
def test_a_relabelled_or_wrongly_tagged_receipt_is_refused(
    chip: Chip, policy: ClientPolicy, tamper: Tamper, check: str
) -> None:
    error = failing(chip, policy, tamper)
    assert isinstance(error, ReceiptInvalid)
    assert error.check == check


def recorded(
    enclave: FakeEnclave, policy: ClientPolicy, request_id: str = "req-9", **receipt: Any
) -> tuple[SealedReader, list[bytes], list[bytes], Session]:
    """A streamed request to `enclave` in a session, a reader for its answer (expecting the
    gateway request id "req-9"), the recorded frames of that answer and the session."""
    gateway = FakeGateway([enclave])
    client = client_for(gateway, policy)
    found = Attestor(client._http, "http://gw", policy).attest(MODEL, None).verified[0]
    session = client.sessions.get(found, "sk-test")
    request = body(stream=True)
    meta = sealed_meta(request_meta(CHAT, request), enclave.key_id, int(time.time()))
    raw, exchange = session.seal_request(meta, request, time.time())
    pieces = engine_answer(request)
    parts = enclave.answer(raw, request_id, pieces, **receipt)
    reader = SealedReader(exchange, session.receipt_key, found, MODEL, 200, "req-9")
    return reader, parts, pieces, session


def test_reading_a_recorded_stream_byte_by_byte(chip: Chip, policy: ClientPolicy) -> None:
    reader, parts, pieces, _ = recorded(FakeEnclave(chip), policy)
    raw = b"".join(parts)
    opened = [p for i in range(len(raw)) for p in reader.feed(raw[i : i + 1])]
    assert b"".join(opened) == b"".join(pieces)
    assert reader.finish().output_tokens == 5


@pytest.mark.parametrize(
    ("receipt", "check"),
    [
        ({"model": "other-model"}, "receipt.model"),
        ({"status": 500}, "receipt.status"),
        ({"request_id": "req-other"}, "receipt.request_id"),  # another request's receipt
    ],
)
def test_a_receipt_for_other_terms_is_refused(
    chip: Chip, policy: ClientPolicy, receipt: dict[str, Any], check: str
) -> None:
    reader, parts, _, _ = recorded(FakeEnclave(chip), policy, **receipt)
    for part in parts:
        reader.feed(part)
    with pytest.raises(SealingError) as raised:
        reader.finish()
    assert raised.value.check == check


def test_a_receipt_from_another_request_of_the_session_is_refused(
    chip: Chip, policy: ClientPolicy
) -> None:
    """Tagged with our own session's key, so the tag passes: the digests tell."""
    enclave = FakeEnclave(chip)
    reader, parts, _, session = recorded(enclave, policy)
    request = body(stream=True)
    meta = sealed_meta(request_meta(CHAT, request), enclave.key_id, int(time.time()))
    other = enclave.answer(session.seal_request(meta, request, time.time())[0], "req-9",
                           engine_answer(request))  # fmt: skip
    for part in [*parts[:-1], other[-1]]:
        reader.feed(part)
    with pytest.raises(ReceiptInvalid) as raised:
        reader.finish()
    assert raised.value.check == "receipt.request"


def test_a_receipt_for_another_enclave_is_refused(chip: Chip, policy: ClientPolicy) -> None:
    enclave = FakeEnclave(chip)
    reader, parts, _, session = recorded(enclave, policy)
    impostor = FakeEnclave(chip)
    swapped = retag(session.receipt_key, signing_key_sha256=impostor.signing_key_sha256)
    for part in swapped(parts):
        reader.feed(part)
    with pytest.raises(ReceiptInvalid) as raised:
        reader.finish()
    assert raised.value.check == "receipt.signing_key"


def test_an_answer_to_another_request_does_not_open(chip: Chip, policy: ClientPolicy) -> None:
    enclave = FakeEnclave(chip)
    reader, _, _, session = recorded(enclave, policy)
    request = body(stream=True)
    meta = sealed_meta(request_meta(CHAT, request), enclave.key_id, int(time.time()))
    other = enclave.answer(session.seal_request(meta, request, time.time())[0], "req-9",
                           engine_answer(request))  # fmt: skip
    with pytest.raises(OpenFailed) as raised:
        reader.feed(other[0])
    assert raised.value.check == "session.open"  # bound to its own request


def test_a_chunk_of_another_session_does_not_open(chip: Chip, policy: ClientPolicy) -> None:
    enclave = FakeEnclave(chip)
    reader, _, _, _ = recorded(enclave, policy)
    _, foreign, _, _ = recorded(enclave, policy)
    with pytest.raises(OpenFailed) as raised:
        reader.feed(foreign[0])
    assert raised.value.check == "session.id"
