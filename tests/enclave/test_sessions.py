"""Opening wire v2 sessions with a real agent process (POST /v1/sessions), the signed Merkle
roots over its receipts (after K receipts, after S seconds, on POST /v1/sessions/roots), and
the agent's bounded session store. Who may open a session: only a gateway key the agent pins,
signing its own HELLO; a client only through the gateway; each HELLO once."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.sealing import frames, hpke
from teeroute.sealing.errors import ReceiptInvalid
from teeroute.sealing.receipt_mac import ReceiptV2, RootTracker, parse_root, verify_bundle
from teeroute.sealing.session import Session, initiate, parse_hello
from teeroute_enclave.keys import EnclaveKeys as AgentKeys
from teeroute_enclave.sessions import Entry, SessionExists, SessionStore
from tests import gateway_key

from .sealed_client import (
    GATEWAY,
    EnclaveKeys,
    Sealer,
    agent_process,
    client_session,
    enclave_keys,
    gateway_session,
    params,
    post_frame,
    post_sealed,
    wrap,
)
from .test_agent import chip_dir  # noqa: F401 - a fixture, used by name
from .test_agent_proxy import MODEL, engine_process

TEXT = "/v1/completions"
SESSIONS = "/v1/sessions"
ROOTS = "/v1/sessions/roots"
K = 3
BODY = {"model": MODEL, "prompt": "hi", "max_tokens": 2}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    with engine_process(log, "--tokens-per-s", "50") as (url, _):  # one event per token
        yield url


@pytest.fixture(scope="module")
def agent(
    engine: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    log = tmp_path_factory.mktemp("agent") / "agent.log"
    with agent_process(chip_dir, engine, log, root_receipts=str(K), root_interval_s="3600") as url:
        yield url


@pytest.fixture(scope="module")
def keys(agent: str) -> EnclaveKeys:
    return enclave_keys(agent)


def refusal(answer: httpx.Response) -> tuple[int, str, str]:
    error = answer.json()["error"]
    return answer.status_code, error["type"], error["message"]


# --- who may open a session ------------------------------------------------------------

OTHER = ed25519.Ed25519PrivateKey.generate()
OTHER_GATEWAY = "gateway:" + hashlib.sha256(OTHER.public_key().public_bytes_raw()).hexdigest()


def _hello(keys: EnclaveKeys, case: str) -> bytes:
    """A HELLO an attacker (or a misconfigured gateway) sends, by case name."""
    now = int(time.time())
    cases = {
        "unsigned": (params(keys), None),
        "signed by another key in our gateway's name": (params(keys), OTHER.sign),
        "signed by a gateway key the agent does not pin": (params(keys, OTHER_GATEWAY), OTHER.sign),
        "a client's, not wrapped by the gateway": (params(keys, "client"), None),
        "created 400 s ago": (params(keys, created_at=now - 400), gateway_key.PRIVATE.sign),
    }
    session_params, sign = cases[case]
    return initiate(keys.hpke, session_params, sign)[0]


@pytest.mark.parametrize(
    ("case", "status", "kind"),
    [
        ("unsigned", 401, "gateway_auth_missing"),
        ("signed by another key in our gateway's name", 401, "gateway_auth_invalid"),
        ("signed by a gateway key the agent does not pin", 401, "gateway_auth_invalid"),
        ("a client's, not wrapped by the gateway", 403, "session_refused"),
        ("created 400 s ago", 400, "session_invalid"),
    ],
)
def test_a_hello_the_agent_must_not_take_is_refused(
    agent: str, keys: EnclaveKeys, case: str, status: int, kind: str
) -> None:
    assert refusal(post_frame(agent, SESSIONS, _hello(keys, case)))[:2] == (status, kind)


def test_a_hello_for_another_enclave_key_is_421(agent: str, keys: EnclaveKeys) -> None:
    _, other_hpke = hpke.generate_key_pair()
    other = EnclaveKeys(other_hpke, keys.signing)
    hello = initiate(other.hpke, params(other), gateway_key.PRIVATE.sign)[0]
    status, kind, message = refusal(post_frame(agent, SESSIONS, hello))
    assert (status, kind) == (421, "sealed_key_mismatch")
    assert message.startswith("session.key")


def test_a_hello_naming_another_signing_key_is_refused(agent: str, keys: EnclaveKeys) -> None:
    signing = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    other = EnclaveKeys(keys.hpke, signing)
    hello = initiate(other.hpke, params(other), gateway_key.PRIVATE.sign)[0]
    status, kind, message = refusal(post_frame(agent, SESSIONS, hello))
    assert (status, kind) == (400, "session_invalid")
    assert message.startswith("session.signing_key")


def test_a_hello_sent_again_opens_no_second_session(agent: str, keys: EnclaveKeys) -> None:
    """A copy of the gateway's HELLO would open a session with the same keys, under which the
    first session's requests could be replayed: it is taken once."""
    hello = initiate(keys.hpke, params(keys), gateway_key.PRIVATE.sign)[0]
    assert post_frame(agent, SESSIONS, hello).status_code == 200
    status, kind, message = refusal(post_frame(agent, SESSIONS, hello))
    assert (status, kind) == (409, "sealed_request_replayed")
    assert message.startswith("hello.created_at")


def test_a_client_hello_for_a_gateway_session_id_opens_nothing(
    agent: str, keys: EnclaveKeys
) -> None:
    """A client choosing the id of an open session (the gateway's or another client's) gets
    409 and the open one is left as it is."""
    gateway = gateway_session(agent, keys)
    first = client_session(agent, keys, gateway)
    same_id = dataclasses.replace(params(keys, "client"), session_id=first.id)
    hello = initiate(keys.hpke, same_id)[0]
    answer = post_frame(agent, SESSIONS, wrap(gateway, SESSIONS, "client", hello))
    assert refusal(answer)[:2] == (409, "session_exists")
    raw, exchange = Sealer(keys, gateway, "client", first).seal(TEXT, BODY)
    assert post_sealed(agent, TEXT, raw, exchange).finished


def test_a_gateway_hello_wrapped_as_a_clients_is_refused(agent: str, keys: EnclaveKeys) -> None:
    gateway = gateway_session(agent, keys)
    hello = initiate(keys.hpke, params(keys), gateway_key.PRIVATE.sign)[0]
    answer = post_frame(agent, SESSIONS, wrap(gateway, SESSIONS, "client", hello))
    assert refusal(answer)[:2] == (403, "session_refused")


def test_an_agent_pinning_no_gateway_key_opens_no_session(
    engine: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    with agent_process(chip_dir, engine, tmp_path / "agent.log", gateway_keys="") as agent:
        keys = enclave_keys(agent)
        hello = initiate(keys.hpke, params(keys), gateway_key.PRIVATE.sign)[0]
        assert refusal(post_frame(agent, SESSIONS, hello))[:2] == (403, "gateway_auth_disabled")


def test_the_hello_window_is_the_replay_window_setting(
    engine: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    log = tmp_path / "agent.log"
    with agent_process(chip_dir, engine, log, replay_window_s="30") as agent:
        keys = enclave_keys(agent)
        old = params(keys, created_at=int(time.time()) - 60)
        hello = initiate(keys.hpke, old, gateway_key.PRIVATE.sign)[0]
        status, kind, message = refusal(post_frame(agent, SESSIONS, hello))
        assert (status, kind) == (400, "session_invalid")
        assert "30 s window" in message
        assert gateway_session(agent, keys).confirmed


def test_requests_and_answers_keep_opening_across_rekeys(agent: str, keys: EnclaveKeys) -> None:
    """Both ends move to a new epoch every 2 messages; streamed answers of several chunks
    each cross epochs (the enclave's sender rekeys too), and every one still opens whole."""
    sealer = Sealer(keys, gateway_session(agent, keys, rekey_messages=2))
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 6, "stream": True}
    epochs = set()
    for _ in range(4):
        raw, exchange = sealer.seal(TEXT, body)
        epochs.add(int.from_bytes(raw[frames.HEADER_LEN + 16 : frames.HEADER_LEN + 20], "big"))
        answer = post_sealed(agent, TEXT, raw, exchange)
        assert answer.finished and len(answer.pieces) > 2
        answer.checked_receipt(sealer)
    assert len(epochs) >= 2  # the requests themselves went out in more than one epoch


# --- signed roots over the receipts -----------------------------------------------------


def receipts(
    agent: str, sealer: Sealer, count: int, first: int = 0
) -> list[tuple[str, ReceiptV2, list[bytes]]]:
    """(request id, receipt, ROOT payloads) of `count` requests, named r<first>, ..."""
    found = []
    for n in range(first, first + count):
        raw, exchange = sealer.seal(TEXT, BODY)
        answer = post_sealed(agent, TEXT, raw, exchange, {"X-Request-Id": f"r{n}"})
        found.append((f"r{n}", answer.checked_receipt(sealer), answer.roots))
    return found


def test_a_root_signed_by_the_attested_key_follows_every_kth_receipt(
    agent: str, keys: EnclaveKeys
) -> None:
    gateway = gateway_session(agent, keys)
    sealers = [Sealer(keys, gateway), Sealer(keys, gateway, "oneshot")]
    got = receipts(agent, sealers[0], 1) + receipts(agent, sealers[1], K - 1, first=1)
    assert [len(roots) for _, _, roots in got] == [0] * (K - 1) + [1]
    tracker = RootTracker(session_id=gateway.id, hpke_key_sha256=keys.hpke_sha256)
    for request_id, receipt, _ in got:
        assert tracker.note(receipt, request_id, time.time()) == []
    root = got[-1][2][0]
    assert (parse_root(root).first_index, parse_root(root).count) == (0, K)
    with pytest.raises(ReceiptInvalid) as wrong_key:
        tracker.on_root(root, "ab" * 32)
    assert wrong_key.value.check == "root.key"
    proofs = dict(tracker.on_root(root, keys.signing_sha256))
    assert sorted(proofs) == ["r0", "r1", "r2"]
    for request_id, receipt, _ in got:
        assert verify_bundle(proofs[request_id], keys.signing_sha256) == receipt
    assert receipts(agent, sealers[0], 1)[0][2] == []  # the next batch starts afresh


def test_a_roots_call_signs_what_is_pending_and_then_signs_nothing_new(
    agent: str, keys: EnclaveKeys
) -> None:
    gateway = gateway_session(agent, keys)
    sealer = Sealer(keys, gateway)
    request_id, receipt, roots = receipts(agent, sealer, 1)[0]
    assert roots == []
    flush = wrap(gateway, ROOTS, "none", b"")
    answer = post_frame(agent, ROOTS, flush)
    assert answer.status_code == 200
    root = frames.decode_one(answer.content)
    assert root.type is frames.FrameType.ROOT
    tracker = RootTracker(session_id=gateway.id, hpke_key_sha256=keys.hpke_sha256)
    tracker.note(receipt, request_id, time.time())
    [(proven, bundle)] = tracker.on_root(root.payload, keys.signing_sha256)
    assert proven == request_id and verify_bundle(bundle, keys.signing_sha256) == receipt
    again = post_frame(agent, ROOTS, wrap(gateway, ROOTS, "none", b""))
    assert (again.status_code, again.content) == (200, answer.content)  # sent again, no new one


def test_a_root_lost_on_the_way_is_sent_again_on_a_roots_call(
    agent: str, keys: EnclaveKeys
) -> None:
    """The answer that carried a ROOT frame may never reach the gateway whole (its client
    left): the roots call sends the recent roots again, so the other receipts still prove."""
    gateway = gateway_session(agent, keys)
    got = receipts(agent, Sealer(keys, gateway), K)
    [lost] = got[-1][2]
    answer = post_frame(agent, ROOTS, wrap(gateway, ROOTS, "none", b""))
    assert answer.status_code == 200
    sent = frames.FrameDecoder().feed(answer.content)
    assert [frame.payload for frame in sent] == [lost]
    tracker = RootTracker(session_id=gateway.id, hpke_key_sha256=keys.hpke_sha256)
    for request_id, receipt, _ in got[:-1]:  # the last answer's receipt was lost with it
        tracker.note(receipt, request_id, time.time())
    assert sorted(dict(tracker.on_root(sent[0].payload, keys.signing_sha256))) == ["r0", "r1"]


def test_roots_lost_with_several_answers_are_sent_again_from_the_index_asked(
    agent: str, keys: EnclaveKeys
) -> None:
    """Clients that leave at once (a load generator stopping, a burst of cancels) take several
    ROOT-carrying answers with them: the roots call sends every recent root that covers the
    lowest receipt index the gateway still waits for, or a later one."""
    gateway = gateway_session(agent, keys)
    got = receipts(agent, Sealer(keys, gateway), 6 * K)
    signed = [roots[0] for _, _, roots in got if roots]
    assert len(signed) == 6

    def roots_from(body: bytes) -> list[bytes]:
        answer = post_frame(agent, ROOTS, wrap(gateway, ROOTS, "none", body))
        assert answer.status_code == 200
        return [frame.payload for frame in frames.FrameDecoder().feed(answer.content)]

    assert roots_from(b"") == signed
    assert roots_from(b'{"from_index":%d}' % (2 * K)) == signed[2:]
    assert roots_from(b'{"from_index":%d}' % (2 * K - 1)) == signed[1:]
    assert roots_from(b'{"from_index":%d}' % (6 * K)) == []
    refused = post_frame(agent, ROOTS, wrap(gateway, ROOTS, "none", b'{"from_index":-1}'))
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request"


def test_a_root_follows_a_receipt_once_the_oldest_waited_s_seconds(
    engine: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    log = tmp_path / "agent.log"
    with agent_process(chip_dir, engine, log, root_interval_s="1") as agent:
        keys = enclave_keys(agent)
        sealer = Sealer(keys, gateway_session(agent, keys))
        first = receipts(agent, sealer, 1)
        time.sleep(1.1)
        second = receipts(agent, sealer, 1)
    assert first[0][2] == []
    [root] = second[0][2]
    assert parse_root(root).count == 2


def test_a_roots_call_replayed_or_of_an_unknown_session_is_refused(
    agent: str, keys: EnclaveKeys
) -> None:
    gateway = gateway_session(agent, keys)
    flush = wrap(gateway, ROOTS, "none", b"")
    assert post_frame(agent, ROOTS, flush).status_code == 200
    assert refusal(post_frame(agent, ROOTS, flush))[:2] == (409, "sealed_request_replayed")
    never_opened = initiate(keys.hpke, params(keys), gateway_key.PRIVATE.sign)[1]
    unknown = wrap(never_opened, ROOTS, "none", b"")
    assert refusal(post_frame(agent, ROOTS, unknown))[:2] == (409, "session_unknown")


# --- the session store ------------------------------------------------------------------

AGENT = AgentKeys.generate()
AGENT_PUBLIC = EnclaveKeys(AGENT.hpke_public, AGENT.signing_public)
NOW = float(int(time.time()))  # whole seconds, as a session's times


def session(lifetime_s: int = 600, session_id: bytes | None = None) -> Session:
    """An enclave-side session, opened as the agent opens one."""
    opened = params(AGENT_PUBLIC, GATEWAY, lifetime_s=lifetime_s, created_at=int(NOW))
    if session_id is not None:
        opened = dataclasses.replace(opened, session_id=session_id)
    hello = initiate(AGENT.hpke_public, opened)[0]
    return AGENT.accept(parse_hello(hello[frames.HEADER_LEN :]), NOW)[1]


def stored(store: SessionStore, *sessions: Session) -> list[bool]:
    return [store.get(s.id, NOW, AGENT.hpke_key_id) is not None for s in sessions]


def test_a_full_store_closes_its_least_recently_used_session() -> None:
    store = SessionStore(capacity=2)
    a, b, c = session(), session(), session()
    store.add(Entry(a), NOW)
    store.add(Entry(b), NOW)
    assert stored(store, a) == [True]  # a is now the most recently used
    store.add(Entry(c), NOW)
    assert stored(store, a, b, c) == [True, False, True]
    assert not b.alive(NOW) and len(store) == 2


def test_a_full_store_drops_expired_sessions_first() -> None:
    store = SessionStore(capacity=2)
    short, long, new = session(lifetime_s=10), session(), session()
    store.add(Entry(short), NOW)
    store.add(Entry(long), NOW)
    store.get(short.id, NOW, AGENT.hpke_key_id)  # the least recently used is `long`
    store.add(Entry(new), NOW + 20)
    assert stored(store, long, new) == [True, True]
    assert store.get(short.id, NOW + 20, AGENT.hpke_key_id) is None


def test_a_session_dies_at_its_expiry() -> None:
    store = SessionStore()
    opened = session(lifetime_s=10)
    store.add(Entry(opened), NOW)
    assert store.get(opened.id, NOW + 9.9, AGENT.hpke_key_id) is not None
    assert store.get(opened.id, NOW + 10, AGENT.hpke_key_id) is None
    assert len(store) == 0


def test_a_session_opened_to_other_keys_is_closed() -> None:
    store = SessionStore()
    opened = session()
    store.add(Entry(opened), NOW)
    assert store.get(opened.id, NOW, "00" * 32) is None
    assert not opened.alive(NOW)
    assert store.get(opened.id, NOW, AGENT.hpke_key_id) is None


def test_an_open_session_id_cannot_be_taken_again() -> None:
    store = SessionStore()
    first = session()
    store.add(Entry(first), NOW)
    with pytest.raises(SessionExists):
        store.add(Entry(session(session_id=first.id)), NOW)
    assert store.get(first.id, NOW, AGENT.hpke_key_id) == Entry(first)
