"""Client sessions (wire v2): one per verified enclave, opened through the gateway and shared
by concurrent requests, bound to what the client verified and ending with that verification;
one-shot requests keep none; a session the enclave forgot is opened again once; a WELCOME
not from the enclave is refused before anything is sent."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import httpx
import pytest

from teeroute.client.attest import VerifiedEnclave
from teeroute.client.errors import (
    GatewayError,
)
from teeroute.client.policy import ClientPolicy
from teeroute.client.session import (
    SealedClient,
)
from teeroute.client.sessions import MAX_LIFETIME, session_params
from teeroute.sealing.errors import OpenFailed

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

# --- sessions ------------------------------------------------------------------------------


def test_requests_to_one_enclave_share_one_session(chip: Chip, policy: ClientPolicy) -> None:
    enclave = FakeEnclave(chip)
    gateway = FakeGateway([enclave])
    client = client_for(gateway, policy)
    for stream in (False, True, False, True):
        answer = client.request(CHAT, body(stream))
        answer.read()
        assert answer.receipt is not None and not answer.one_shot
    assert gateway.hellos == [enclave.key_id]  # one handshake
    assert gateway.kinds == ["REQUEST"] * 4
    assert len(enclave.sessions) == 1


def test_one_shot_requests_carry_their_own_handshake(chip: Chip, policy: ClientPolicy) -> None:
    enclave = FakeEnclave(chip)
    gateway = FakeGateway([enclave])
    client = client_for(gateway, policy, one_shot=True)
    for stream in (False, True):
        answer = client.request(CHAT, body(stream))
        pieces = list(answer)
        assert pieces == engine_answer(body(stream))
        assert answer.one_shot and answer.receipt is not None
    assert gateway.kinds == ["ONESHOT", "ONESHOT"]
    assert gateway.hellos == [] and enclave.sessions == {}  # nothing opened, nothing kept


def test_a_session_the_enclave_forgot_is_opened_again_once(
    chip: Chip, policy: ClientPolicy
) -> None:
    enclave = FakeEnclave(chip)
    gateway = FakeGateway([enclave])
    client = client_for(gateway, policy)
    client.request(CHAT, body()).read()
    enclave.sessions.clear()  # it restarted: 409 session_unknown
    answer = client.request(CHAT, body(stream=True))
    assert list(answer) == engine_answer(body(stream=True))
    assert gateway.hellos == [enclave.key_id] * 2
    assert gateway.kinds == ["REQUEST"] * 3  # the refused one, then the same request again


def test_a_session_unknown_twice_is_returned(chip: Chip, policy: ClientPolicy) -> None:
    class Forgetful(FakeEnclave):
        def welcome(self, raw_hello: bytes, now: float | None = None) -> bytes:
            welcome = super().welcome(raw_hello, now)
            self.sessions.clear()  # accepts, then forgets at once
            return welcome

    gateway = FakeGateway([Forgetful(chip)])
    with pytest.raises(GatewayError) as raised:
        client_for(gateway, policy).request(CHAT, body())
    assert raised.value.status == 409
    assert len(gateway.hellos) == 2 and len(gateway.inference) == 2


def test_a_session_ends_with_our_verification_of_the_enclave(chip: Chip, tmp_path: Path) -> None:
    now = [dt.datetime.now(dt.UTC)]
    policy = simulated_policy(chip, tmp_path, maxEvidenceAge="60s")
    enclave = FakeEnclave(chip)
    gateway = FakeGateway([enclave])
    http = httpx.Client(transport=gateway.transport())
    client = SealedClient("http://gw", "sk-test", policy, http=http, clock=lambda: now[0])
    client.request(CHAT, body()).read()
    (session,) = enclave.sessions.values()
    assert session.params.expires_at == int((now[0] + dt.timedelta(seconds=60)).timestamp())
    now[0] += dt.timedelta(seconds=30)
    client.request(CHAT, body()).read()
    assert len(gateway.hellos) == 1
    now[0] += dt.timedelta(seconds=40)  # past the verification: evidence again, a new session
    client.request(CHAT, body()).read()
    assert (gateway.attestations, len(gateway.hellos)) == (2, 2)


def test_a_verification_about_to_end_is_renewed_before_a_session_stands_on_it(
    chip: Chip, tmp_path: Path
) -> None:
    """The cached verification has 3 s left, too little for a session: evidence again."""
    now = [dt.datetime.now(dt.UTC)]
    policy = simulated_policy(chip, tmp_path, maxEvidenceAge="60s")
    gateway = FakeGateway([FakeEnclave(chip)])
    http = httpx.Client(transport=gateway.transport())
    client = SealedClient("http://gw", "sk-test", policy, http=http, clock=lambda: now[0])
    client.request(CHAT, body()).read()
    now[0] += dt.timedelta(seconds=57)
    answer = client.request(CHAT, body())
    assert answer.read() and answer.receipt is not None
    assert (gateway.attestations, len(gateway.hellos)) == (2, 2)


def verified(enclave: FakeEnclave, at: dt.datetime) -> VerifiedEnclave:
    return VerifiedEnclave(
        pool=enclave.pool,
        endpoint_id=enclave.endpoint_id,
        tee="simulated",
        measurement="ab" * 48,
        chip_id="chip-1",
        hpke_public=enclave.hpke_public,
        signing_public=enclave.signing_public,
        hpke_key_sha256=enclave.key_id,
        signing_key_sha256=enclave.signing_key_sha256,
        verified_at=at,
    )


def test_session_params_bind_what_the_client_verified(chip: Chip) -> None:
    enclave = FakeEnclave(chip)
    at = dt.datetime(2026, 12, 5, 1, 0, tzinfo=dt.UTC)
    params = session_params(verified(enclave, at), at, dt.timedelta(minutes=5), b"\x07" * 16)
    assert params.initiator == "client"
    assert (params.enclave_hpke_sha256, params.enclave_signing_sha256) == (
        enclave.key_id,
        enclave.signing_key_sha256,
    )
    assert dict(params.attested) == {
        "tee": "simulated",
        "measurement": "ab" * 48,
        "chip_id": "chip-1",
        "attested_at": "2026-12-05T01:00:00+00:00",
    }
    assert params.created_at == int(at.timestamp())
    assert params.expires_at == int(at.timestamp()) + 300  # the verification's freshness
    later = session_params(verified(enclave, at), at, dt.timedelta(hours=5), b"\x07" * 16)
    assert later.expires_at == int((at + MAX_LIFETIME).timestamp())  # at most an hour


def test_a_welcome_not_from_the_enclave_is_refused_and_nothing_sent(
    chip: Chip, policy: ClientPolicy
) -> None:
    def forged(welcome: bytes) -> bytes:
        return welcome[:-1] + bytes([welcome[-1] ^ 1])

    gateway = FakeGateway([FakeEnclave(chip)], welcome_tamper=forged)
    with pytest.raises(OpenFailed) as raised:
        client_for(gateway, policy).request(CHAT, body())
    assert raised.value.check == "session.confirm"
    assert gateway.inference == []


def test_concurrent_requests_share_one_handshake(chip: Chip, policy: ClientPolicy) -> None:
    gateway = FakeGateway([FakeEnclave(chip)])
    client = client_for(gateway, policy)
    client.attest(MODEL)  # the attestation round is shared already; this is about sessions
    done: list[int] = []

    def one() -> None:
        answer = client.request(CHAT, body(stream=True))
        done.append(len(list(answer)))

    workers = [threading.Thread(target=one) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert done == [len(engine_answer(body(stream=True)))] * 8
    assert len(gateway.hellos) == 1
