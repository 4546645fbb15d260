"""The sealed client (wire v2) against enclaves with real keys: what it reads of a request,
requests sealed to a verified enclave only, whole round trips, the enclave chosen, gone
enclaves replaced, gateway errors passed on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from teeroute.client.errors import (
    AttestationRefused,
    GatewayError,
    InvalidRequest,
    ResponseInvalid,
)
from teeroute.client.policy import ClientPolicy
from teeroute.client.session import (
    normalize_gateway,
    request_meta,
    sealed_meta,
)

from .fakes import (
    CHAT,
    MODEL,
    Chip,
    FakeEnclave,
    FakeGateway,
    body,
    client_for,
    engine_answer,
    simulated_policy,
)

# --- the request side ---------------------------------------------------------------------


def test_meta_is_what_the_gateway_may_read() -> None:
    assert request_meta(CHAT, body(True, max_tokens=9)) == {
        "path": CHAT,
        "model": MODEL,
        "stream": True,
        "max_tokens": 9,
        "receipt_timings": True,
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


def test_the_sealed_meta_names_the_enclave_key_and_the_time() -> None:
    raw = sealed_meta(request_meta(CHAT, body(True, max_tokens=9)), "ab" * 32, 1795600000)
    assert raw == (
        b'{"key_id":"' + b"ab" * 32 + b'","max_tokens":9,"model":"sim-model",'
        b'"path":"/v1/chat/completions","receipt_timings":true,"sealed_at":1795600000,'
        b'"stream":true}'
    )


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
    assert gateway.hellos == [enclave.key_id]  # the session was opened through the gateway


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
    assert gateway.hellos.count(gone.key_id) == 1  # tried once, then forgotten
    assert gateway.inference.count(staying.key_id) == 5


def test_an_enclave_leaving_between_requests_is_replaced(chip: Chip, policy: ClientPolicy) -> None:
    """Its session was open: the 503 comes for the request itself, and the request is sealed
    again to the other enclave, in a session of its own."""
    a, b = FakeEnclave(chip), FakeEnclave(chip, name="e1")
    gateway = FakeGateway([a, b])
    client = client_for(gateway, policy, seed=5)
    client.request(CHAT, body()).read()
    first = gateway.inference[0]
    gateway.gone.add(first)
    answer = client.request(CHAT, body())
    assert answer.read() and answer.receipt is not None
    other = next(e.key_id for e in (a, b) if e.key_id != first)
    assert gateway.inference[1:] == [first, other]
    assert gateway.hellos.count(other) == 1


def test_when_the_only_enclave_left_its_503_is_returned(chip: Chip, policy: ClientPolicy) -> None:
    gone = FakeEnclave(chip)
    gateway = FakeGateway([gone], gone={gone.key_id})
    with pytest.raises(GatewayError) as raised:
        client_for(gateway, policy).request(CHAT, body())
    assert (raised.value.status, raised.value.code) == (503, "sealed_key_unavailable")
    assert gateway.hellos == [gone.key_id]
    assert gateway.inference == []  # no session, nothing sealed was sent
    assert gateway.attestations == 2  # a fresh round found no other enclave


def test_retries_happen_once(chip: Chip, policy: ClientPolicy) -> None:
    a, b = FakeEnclave(chip), FakeEnclave(chip, name="e1")
    gateway = FakeGateway([a, b], gone={a.key_id, b.key_id})
    with pytest.raises(GatewayError, match="503"):
        client_for(gateway, policy).request(CHAT, body())
    assert len(gateway.hellos) == 2


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
