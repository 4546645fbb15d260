"""The sealed client against enclaves with real keys: requests sealed to a verified enclave
only, answers opened frame by frame, receipts checked against this request and answer; every
way a hostile gateway or host could cut, reorder, replay or relabel the answer is caught."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from teeroute.client.attest import Attestor
from teeroute.client.errors import (
    AttestationRefused,
    GatewayError,
    InvalidRequest,
    ResponseInvalid,
)
from teeroute.client.policy import ClientPolicy
from teeroute.client.session import SealedClient, SealedReader, normalize_gateway, request_meta
from teeroute.sealing import envelope
from teeroute.sealing.errors import OpenFailed, ReceiptInvalid, SealingError
from teeroute.sealing.receipts import SIGNATURE_CONTEXT

from .fakes import (
    MODEL,
    Chip,
    FakeEnclave,
    FakeGateway,
    Tamper,
    engine_answer,
    make_chip,
    simulated_policy,
)

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def chip() -> Chip:
    return make_chip()


@pytest.fixture
def policy(chip: Chip, tmp_path: Path) -> ClientPolicy:
    return simulated_policy(chip, tmp_path)


def body(stream: bool = False, **extra: object) -> bytes:
    request = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return json.dumps({**request, **extra}).encode()


def client_for(gateway: FakeGateway, policy: ClientPolicy, seed: int = 1) -> SealedClient:
    http = httpx.Client(transport=gateway.transport())
    return SealedClient("http://gw/v1/", "sk-test", policy, http=http, rng=random.Random(seed))


# --- the request side ---------------------------------------------------------------------


def test_meta_is_what_the_gateway_may_read() -> None:
    assert request_meta(CHAT, body(True, max_tokens=9)) == {
        "path": CHAT,
        "model": MODEL,
        "stream": True,
        "max_tokens": 9,
    }
    assert request_meta(CHAT, body(max_completion_tokens=4))["max_tokens"] == 4
    assert request_meta(CHAT, body())["max_tokens"] == 4096  # always bounded: the SDK default
    assert request_meta(CHAT, body(max_tokens=9, n=3))["max_tokens"] == 27  # every choice held


@pytest.mark.parametrize(
    ("path", "raw", "param"),
    [
        ("/v1/embeddings", body(), "path"),
        (CHAT, b"{not json", "body"),
        (CHAT, b"[1]", "body"),
        (CHAT, b'{"messages": []}', "model"),
    ],
)
def test_requests_we_cannot_seal(path: str, raw: bytes, param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        request_meta(path, raw)
    assert raised.value.param == param


def test_gateway_urls_with_or_without_v1() -> None:
    assert normalize_gateway("http://gw/v1/") == "http://gw"
    assert normalize_gateway("http://gw") == "http://gw"


# --- whole round trips --------------------------------------------------------------------


def test_a_non_streamed_answer_opens_and_its_receipt_verifies(
    chip: Chip, policy: ClientPolicy
) -> None:
    enclave = FakeEnclave(chip)
    gateway = FakeGateway([enclave])
    with client_for(gateway, policy).request(CHAT, body()) as answer:
        data = answer.read()
    assert json.loads(data)["choices"][0]["message"]["content"] == "Sealed hello from the enclave"
    assert answer.status == 200
    assert answer.enclave.hpke_key_sha256 == enclave.key_id
    assert answer.receipt is not None
    assert (answer.receipt.input_tokens, answer.receipt.output_tokens) == (7, 5)
    assert answer.receipt.request_id == answer.request_id == "req-1"
    assert gateway.inference == [enclave.key_id]


def test_a_stream_yields_each_frame_as_it_opens(chip: Chip, policy: ClientPolicy) -> None:
    gateway = FakeGateway([FakeEnclave(chip)])
    answer = client_for(gateway, policy).request(CHAT, body(stream=True))
    pieces = list(answer)
    assert pieces == engine_answer(body(stream=True))
    assert answer.receipt is not None
    assert answer.receipt.complete


def test_the_enclave_is_chosen_at_random_among_verified_ones(
    chip: Chip, policy: ClientPolicy
) -> None:
    enclaves = [FakeEnclave(chip, name=f"e{i}") for i in range(3)]
    gateway = FakeGateway(enclaves)
    client = client_for(gateway, policy, seed=3)
    for _ in range(30):
        client.request(CHAT, body()).read()
    assert set(gateway.inference) == {e.key_id for e in enclaves}
    assert gateway.attestations == 1  # cached


def test_only_verified_enclaves_are_chosen(chip: Chip, tmp_path: Path) -> None:
    good = FakeEnclave(chip)
    other = FakeEnclave(chip, name="e1", measurement=b"\xcd" * 48)
    policy = simulated_policy(chip, tmp_path, allowedMeasurements=["ab" * 48])
    gateway = FakeGateway([other, good])
    client = client_for(gateway, policy)
    for _ in range(10):
        client.request(CHAT, body()).read()
    assert set(gateway.inference) == {good.key_id}


def test_refused_attestation_sends_nothing(chip: Chip, tmp_path: Path) -> None:
    policy = simulated_policy(chip, tmp_path, allowedMeasurements=["cd" * 48])
    gateway = FakeGateway([FakeEnclave(chip), FakeEnclave(chip, name="e1")])
    with pytest.raises(AttestationRefused) as raised:
        client_for(gateway, policy).request(CHAT, body())
    assert gateway.inference == []
    assert raised.value.checks == ["policy.measurement"]
    message = str(raised.value)
    assert "ns/pool-a/e0 (simulated): policy.measurement" in message
    assert "ns/pool-a/e1 (simulated): policy.measurement" in message


def test_a_simulated_miner_is_refused_by_default(chip: Chip) -> None:
    gateway = FakeGateway([FakeEnclave(chip)])
    with pytest.raises(AttestationRefused, match=r"policy\.tee_allowed"):
        client_for(gateway, ClientPolicy()).request(CHAT, body())
    assert gateway.inference == []


def test_an_enclave_that_left_is_dropped_and_another_used(chip: Chip, policy: ClientPolicy) -> None:
    gone, staying = FakeEnclave(chip), FakeEnclave(chip, name="e1")
    gateway = FakeGateway([gone, staying], gone={gone.key_id})
    client = client_for(gateway, policy)
    for _ in range(5):
        client.request(CHAT, body()).read()
    assert gateway.inference.count(gone.key_id) == 1  # tried once, then forgotten
    assert gateway.inference.count(staying.key_id) == 5


def test_when_the_only_enclave_left_its_503_is_returned(chip: Chip, policy: ClientPolicy) -> None:
    gone = FakeEnclave(chip)
    gateway = FakeGateway([gone], gone={gone.key_id})
    with pytest.raises(GatewayError) as raised:
        client_for(gateway, policy).request(CHAT, body())
    assert (raised.value.status, raised.value.code) == (503, "sealed_key_unavailable")
    assert gateway.inference == [gone.key_id]
    assert gateway.attestations == 2  # a fresh round found no other enclave


def test_retries_happen_once(chip: Chip, policy: ClientPolicy) -> None:
    a, b = FakeEnclave(chip), FakeEnclave(chip, name="e1")
    gateway = FakeGateway([a, b], gone={a.key_id, b.key_id})
    with pytest.raises(GatewayError, match="503"):
        client_for(gateway, policy).request(CHAT, body())
    assert len(gateway.inference) == 2


def test_gateway_errors_pass_through(chip: Chip, policy: ClientPolicy) -> None:
    gateway = FakeGateway([FakeEnclave(chip)])
    client = client_for(gateway, policy)
    with pytest.raises(GatewayError) as raised:
        client.request(CHAT, body(), api_key="sk-wrong")
    assert raised.value.status == 401
    assert raised.value.code == "invalid_api_key"
    assert json.loads(raised.value.body)["error"]["message"] == "unknown key"


def test_an_answer_in_clear_is_refused(chip: Chip, policy: ClientPolicy) -> None:
    gateway = FakeGateway([FakeEnclave(chip)], clear_answer=True)
    with pytest.raises(ResponseInvalid) as raised:
        client_for(gateway, policy).request(CHAT, body())
    assert raised.value.check == "response.sealed"


def test_a_sealed_engine_error_keeps_its_status(chip: Chip, policy: ClientPolicy) -> None:
    gateway = FakeGateway([FakeEnclave(chip)], status=400)
    answer = client_for(gateway, policy).request(CHAT, body())
    answer.read()
    assert answer.status == 400
    assert answer.receipt is not None
    assert answer.receipt.status == 400


# --- a hostile path between us and the enclave --------------------------------------------


def failing(chip: Chip, policy: ClientPolicy, tamper: Tamper) -> SealingError:
    gateway = FakeGateway([FakeEnclave(chip)], tamper=tamper)
    answer = client_for(gateway, policy).request(CHAT, body(stream=True))
    with pytest.raises(SealingError) as raised:
        answer.read()
    assert answer.receipt is None
    return raised.value


@pytest.mark.parametrize(
    ("tamper", "check"),
    [
        (lambda p: p[:-2] + p[-1:], "response.truncated"),  # final frame dropped
        (lambda p: p[:3], "response.truncated"),  # cut mid-stream
        (lambda p: p[:-1], "receipt.missing"),
        (lambda p: [p[1], p[0], *p[2:]], "frame.open"),  # reordered
        (lambda p: [p[0], p[0], *p[1:]], "frame.open"),  # replayed
        (lambda p: [p[0], *p[2:]], "frame.open"),  # dropped
        (lambda p: [*p[:-1], p[-2], p[-1]], "frame.final"),  # a frame after the final one
        (lambda p: [*p, p[-1]], "receipt.format"),  # two receipts
        (lambda p: [*p[:-2], p[-1], p[-2]], "response.truncated"),  # receipt before final
        (lambda p: [*p, p[0]], "frame.order"),  # a frame after the receipt
        (lambda p: [*p[:-1], p[-1][:-5]], "response.truncated"),  # cut inside the receipt
    ],
)
def test_cut_reordered_or_replayed_frames_are_caught(
    chip: Chip, policy: ClientPolicy, tamper: Tamper, check: str
) -> None:
    assert failing(chip, policy, tamper).check == check


def flip(event: bytes) -> bytes:
    head, _, data = event.rstrip(b"\n").rpartition(b"data: ")
    raw = bytearray(envelope.unb64(data.decode(), "x"))
    raw[0] ^= 1
    return head + b"data: " + envelope.b64(bytes(raw)).encode() + b"\n\n"


def test_an_altered_frame_fails_to_open(chip: Chip, policy: ClientPolicy) -> None:
    error = failing(chip, policy, lambda p: [flip(p[0]), *p[1:]])
    assert isinstance(error, OpenFailed)
    assert error.check == "frame.open"


def relabel(**fields: object) -> Tamper:
    def tamper(parts: list[bytes]) -> list[bytes]:
        receipt = json.loads(parts[-1].split(b"data: ", 1)[1])
        receipt.update(fields)
        return [*parts[:-1], envelope.sse_event(b"receipt", envelope.canonical(receipt))]

    return tamper


@pytest.mark.parametrize(
    ("fields", "check"),
    [
        ({"output_tokens": 1}, "receipt.signature"),
        ({"input_tokens": 10**6}, "receipt.signature"),
        ({"signature": "AAAA"}, "receipt.signature"),
        ({"v": "v0"}, "receipt.format"),
    ],
)
def test_a_relabelled_receipt_is_refused(
    chip: Chip, policy: ClientPolicy, fields: dict[str, object], check: str
) -> None:
    error = failing(chip, policy, relabel(**fields))
    assert isinstance(error, ReceiptInvalid)
    assert error.check == check


def recorded(
    enclave: FakeEnclave, policy: ClientPolicy, request_id: str = "req-9", **receipt: Any
) -> tuple[SealedReader, list[bytes], list[bytes]]:
    """A sealed streamed request to `enclave`, a reader for its answer (expecting the gateway
    request id "req-9") and the recorded bytes of that answer."""
    http = httpx.Client(transport=FakeGateway([enclave]).transport())
    verified = Attestor(http, "http://gw", policy).attest(MODEL, None).verified[0]
    request = body(stream=True)
    sealed, opener = envelope.seal_request(
        enclave.hpke_public, request_meta(CHAT, request), request
    )
    pieces = engine_answer(request)
    parts = enclave.answer(sealed.to_bytes(), request_id, pieces, **receipt)
    return SealedReader(opener, sealed, verified, 200, "req-9"), parts, pieces


def test_reading_a_recorded_stream_byte_by_byte(chip: Chip, policy: ClientPolicy) -> None:
    reader, parts, pieces = recorded(FakeEnclave(chip), policy)
    raw = b"".join(parts)
    opened = [p for i in range(len(raw)) for p in reader.feed(raw[i : i + 1])]
    assert opened == pieces
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
    reader, parts, _ = recorded(FakeEnclave(chip), policy, **receipt)
    for part in parts:
        reader.feed(part)
    with pytest.raises(SealingError) as raised:
        reader.finish()
    assert raised.value.check == check


def test_a_receipt_from_another_request_is_refused(chip: Chip, policy: ClientPolicy) -> None:
    enclave = FakeEnclave(chip)
    reader, parts, _ = recorded(enclave, policy)
    _, other, _ = recorded(enclave, policy)
    for part in [*parts[:-1], other[-1]]:
        reader.feed(part)
    with pytest.raises(ReceiptInvalid) as raised:
        reader.finish()
    assert raised.value.check == "receipt.request"


def test_a_receipt_signed_by_another_key_is_refused(chip: Chip, policy: ClientPolicy) -> None:
    enclave = FakeEnclave(chip)
    reader, parts, _ = recorded(enclave, policy)
    impostor = FakeEnclave(chip)  # a key the attestation never vouched for
    genuine = json.loads(parts[-1].split(b"data: ", 1)[1])
    unsigned = {
        **{k: v for k, v in genuine.items() if k != "signature"},
        "signing_key": envelope.b64(impostor.signing_public),
        "signing_key_sha256": envelope.key_id(impostor.signing_public),
    }
    signature = impostor.signing.sign(SIGNATURE_CONTEXT + envelope.canonical(unsigned))
    forged = {**unsigned, "signature": envelope.b64(signature)}
    for part in [*parts[:-1], envelope.sse_event(b"receipt", envelope.canonical(forged))]:
        reader.feed(part)
    with pytest.raises(ReceiptInvalid) as raised:
        reader.finish()
    assert raised.value.check == "receipt.signing_key"


def test_a_response_for_another_request_does_not_open(chip: Chip, policy: ClientPolicy) -> None:
    enclave = FakeEnclave(chip)
    reader, _, _ = recorded(enclave, policy)
    _, other, _ = recorded(enclave, policy)
    with pytest.raises(OpenFailed):
        reader.feed(other[0])
