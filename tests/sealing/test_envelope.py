"""Sealed requests and response frames: round trips, and every kind of tampering detected."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from teeroute.sealing import envelope, hpke
from teeroute.sealing.envelope import (
    FrameReader,
    ResponseOpener,
    ResponseSealer,
    SealedRequest,
    open_request,
    seal_request,
)
from teeroute.sealing.errors import EnvelopeInvalid, OpenFailed, SealingError

META = {"path": "/v1/chat/completions", "model": "m", "stream": True, "max_tokens": 64}
BODY = b'{"model":"m","messages":[{"role":"user","content":"canary-7f3a"}],"stream":true}'
AEADS = list(hpke.Aead)


Enclave = tuple[x25519.X25519PrivateKey, bytes]
Exchange = tuple[SealedRequest, ResponseOpener, ResponseSealer, bytes, list[bytes]]


@pytest.fixture
def enclave() -> Enclave:
    return hpke.generate_key_pair()


def _exchange(enclave: Enclave, aead: hpke.Aead, chunks: list[bytes]) -> Exchange:
    private, public = enclave
    sealed, opener = seal_request(public, META, BODY, aead)
    wire = SealedRequest.parse(sealed.to_bytes())
    body, sealer = open_request(wire, private, public)
    frames = [sealer.seal(c, final=i == len(chunks) - 1) for i, c in enumerate(chunks)]
    return sealed, opener, sealer, body, frames


@pytest.mark.parametrize("aead", AEADS, ids=lambda a: a.value)
def test_a_request_and_its_framed_answer_round_trip(enclave: Enclave, aead: hpke.Aead) -> None:
    chunks = [b"data: one\n\n", b"", b"data: two\n\n", b"data: [DONE]\n\n"]
    sealed, opener, sealer, body, frames = _exchange(enclave, aead, chunks)
    assert body == BODY
    assert [opener.open(f) for f in frames] == chunks
    assert opener.finished
    assert opener.digest.hexdigest() == sealer.digest.hexdigest()
    assert b"canary" not in sealed.to_bytes()


def test_the_wire_form_carries_only_metadata_in_clear(enclave: Enclave) -> None:
    _, public = enclave
    sealed, _ = seal_request(public, META, BODY)
    doc = json.loads(sealed.to_bytes())
    assert set(doc) == {"teeroute_sealed", "aead", "key_id", "enc", "meta", "ciphertext"}
    assert doc["meta"] == {**META, "sealed_at": doc["meta"]["sealed_at"]}
    assert doc["key_id"] == envelope.key_id(public)


def test_a_request_is_stamped_with_when_it_was_sealed_unless_its_meta_says(
    enclave: Enclave,
) -> None:
    _, public = enclave
    before = int(time.time())
    sealed, _ = seal_request(public, META, BODY)
    assert before <= sealed.meta[envelope.SEALED_AT] <= time.time()
    assert type(sealed.meta[envelope.SEALED_AT]) is int
    given, _ = seal_request(public, {**META, "sealed_at": 1_700_000_000}, BODY)
    assert given.meta[envelope.SEALED_AT] == 1_700_000_000


def test_any_flipped_byte_of_enc_or_ciphertext_is_detected(enclave: Enclave) -> None:
    private, public = enclave
    sealed, _ = seal_request(public, META, BODY)
    for field in ("enc", "ciphertext"):
        raw = getattr(sealed, field)
        for i in range(len(raw)):
            bad = bytearray(raw)
            bad[i] ^= 0x01
            tampered = SealedRequest(
                sealed.aead,
                sealed.key_id,
                bytes(bad) if field == "enc" else sealed.enc,
                sealed.meta,
                bytes(bad) if field == "ciphertext" else sealed.ciphertext,
            )
            with pytest.raises(OpenFailed):
                open_request(tampered, private, public)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "other"},
        {"stream": False},
        {"max_tokens": 65},
        {"path": "/v1/completions"},
        {"extra": 1},
        {"sealed_at": 1},
    ],
)
def test_changed_routing_metadata_is_detected(enclave: Enclave, change: dict[str, object]) -> None:
    private, public = enclave
    sealed, _ = seal_request(public, META, BODY)
    moved = SealedRequest(
        sealed.aead, sealed.key_id, sealed.enc, {**sealed.meta, **change}, sealed.ciphertext
    )
    with pytest.raises(OpenFailed):
        open_request(moved, private, public)


def test_a_request_for_another_enclave_is_refused_before_opening(enclave: Enclave) -> None:
    private, public = enclave
    _, other = hpke.generate_key_pair()
    sealed, _ = seal_request(other, META, BODY)
    with pytest.raises(OpenFailed) as found:
        open_request(sealed, private, public)
    assert found.value.check == "key_id"


def test_a_different_aead_label_is_detected(enclave: Enclave) -> None:
    private, public = enclave
    sealed, _ = seal_request(public, META, BODY, hpke.Aead.AES_128_GCM)
    relabelled = SealedRequest(
        hpke.Aead.CHACHA20_POLY1305, sealed.key_id, sealed.enc, sealed.meta, sealed.ciphertext
    )
    with pytest.raises(OpenFailed):
        open_request(relabelled, private, public)


def _frames(enclave: Enclave, n: int = 4) -> Exchange:
    chunks = [f"data: {i}\n\n".encode() for i in range(n)]
    return _exchange(enclave, hpke.Aead.AES_128_GCM, chunks)


def test_reordered_frames_are_detected(enclave: Enclave) -> None:
    _, opener, _, _, frames = _frames(enclave)
    opener.open(frames[0])
    with pytest.raises(OpenFailed) as found:
        opener.open(frames[2])
    assert found.value.check == "frame.open"


def test_a_dropped_frame_is_detected(enclave: Enclave) -> None:
    _, opener, _, _, frames = _frames(enclave)
    with pytest.raises(OpenFailed):
        opener.open(frames[1])


def test_a_replayed_frame_is_detected(enclave: Enclave) -> None:
    _, opener, _, _, frames = _frames(enclave)
    opener.open(frames[0])
    with pytest.raises(OpenFailed):
        opener.open(frames[0])


def test_truncation_leaves_the_answer_unfinished(enclave: Enclave) -> None:
    _, opener, _, _, frames = _frames(enclave)
    for frame in frames[:-1]:
        opener.open(frame)
    assert not opener.finished


def test_nothing_opens_after_the_final_frame(enclave: Enclave) -> None:
    _, opener, sealer, _, frames = _frames(enclave)
    for frame in frames:
        opener.open(frame)
    with pytest.raises(OpenFailed) as found:
        opener.open(frames[-1])
    assert found.value.check == "frame.final"
    with pytest.raises(EnvelopeInvalid):
        sealer.seal(b"more")


def test_a_flipped_byte_in_any_frame_is_detected(enclave: Enclave) -> None:
    _, _, _, _, frames = _frames(enclave, 2)
    for index in range(2):
        for i in range(len(frames[index])):
            _, opener, _, _, fresh = _frames(enclave, 2)
            bad = bytearray(fresh[index])
            bad[i] ^= 0x80
            with pytest.raises(OpenFailed):
                for j, frame in enumerate(fresh):
                    opener.open(bytes(bad) if j == index else frame)


def test_frames_from_another_request_do_not_open(enclave: Enclave) -> None:
    _, opener, _, _, _ = _frames(enclave)
    _, _, _, _, others = _frames(enclave)
    with pytest.raises(OpenFailed):
        opener.open(others[0])


def test_the_frame_reader_splits_events_fed_in_any_pieces(enclave: Enclave) -> None:
    private, public = enclave
    sealed, opener = seal_request(public, META, BODY)
    _, sealer = open_request(sealed, private, public)
    stream = sealer.frame(b"a") + sealer.frame(b"b", final=True)
    stream += envelope.sse_event(envelope.RECEIPT_EVENT, b'{"v":"v1"}')
    reader = FrameReader()
    events = [e for i in range(len(stream)) for e in reader.feed(stream[i : i + 1])]
    assert [e.name for e in events] == [b"sealed", b"sealed", b"receipt"]
    assert b"".join(opener.open(envelope.frame_ciphertext(e)) for e in events[:2]) == b"ab"
    assert events[2].data == b'{"v":"v1"}'
    assert reader.pending == b""


@pytest.mark.parametrize(
    ("doc", "check"),
    [
        ({}, "teeroute_sealed"),
        ({"teeroute_sealed": "v2"}, "teeroute_sealed"),
        ({"teeroute_sealed": "v1", "meta": []}, "meta"),
        ({"teeroute_sealed": "v1", "meta": {}, "key_id": "AB" * 32}, "key_id"),
        ({"teeroute_sealed": "v1", "meta": {}, "key_id": "ab" * 32, "aead": "rot13"}, "aead"),
        (
            {
                "teeroute_sealed": "v1",
                "meta": {},
                "key_id": "ab" * 32,
                "aead": "aes-128-gcm",
                "enc": "***",
            },
            "enc",
        ),
    ],
)
def test_malformed_envelopes_name_the_field(doc: dict[str, object], check: str) -> None:
    with pytest.raises(SealingError) as found:
        SealedRequest.parse(json.dumps(doc).encode())
    assert found.value.check == check


def test_a_non_json_body_is_named() -> None:
    with pytest.raises(EnvelopeInvalid) as found:
        SealedRequest.parse(b"\xff not json")
    assert found.value.check == "body"


def test_unknown_events_in_a_sealed_stream_are_refused() -> None:
    with pytest.raises(EnvelopeInvalid):
        list(FrameReader().feed(b"event: other\ndata: x\n\n"))


def test_b64_helpers_are_standard_base64() -> None:
    assert envelope.b64(b"\xfb\xff") == base64.b64encode(b"\xfb\xff").decode()
    assert envelope.unb64("+/8=", "x") == b"\xfb\xff"
