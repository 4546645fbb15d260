"""Wire v2 sessions, attacker's cases first: every reordered, dropped, replayed, spliced, late or
tampered message is refused naming its check; then handshake, rekey, expiry, oneshot, threads."""

from __future__ import annotations

import hashlib
import os
import random
import struct
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.sealing import hpke, ratchet, session
from teeroute.sealing.errors import SealingError
from teeroute.sealing.frames import FrameDecoder, FrameType, decode_one
from teeroute.sealing.session import (
    Exchange,
    Reply,
    Session,
    SessionParams,
    accept,
    initiate,
    oneshot,
    open_oneshot,
    parse_hello,
)

NOW = 1_800_000_000
ENCLAVE_PRIVATE, ENCLAVE_PUBLIC = hpke.generate_key_pair()
OTHER_PRIVATE, OTHER_PUBLIC = hpke.generate_key_pair()
SIGNING_SHA256 = hashlib.sha256(b"enclave signing key").hexdigest()
ATTESTED = {"tee": "sev-snp", "measurement": "ab" * 48, "attested_at": "2027-01-15T08:00:00Z"}


def params(**changes: Any) -> SessionParams:
    base = SessionParams(
        session_id=os.urandom(16),
        enclave_hpke_sha256=hashlib.sha256(ENCLAVE_PUBLIC).hexdigest(),
        enclave_signing_sha256=SIGNING_SHA256,
        attested=ATTESTED,
        initiator="client",
        created_at=NOW,
        expires_at=NOW + 3600,
    )
    return replace(base, **changes)


def payload(frame: bytes) -> bytes:
    return decode_one(frame).payload


def pair(**changes: Any) -> tuple[Session, Session]:
    """(initiator, enclave), handshake done and confirmed."""
    hello, initiator = initiate(ENCLAVE_PUBLIC, params(**changes))
    welcome, enclave = accept(
        parse_hello(payload(hello)), ENCLAVE_PRIVATE, ENCLAVE_PUBLIC, SIGNING_SHA256, NOW
    )
    initiator.confirm(payload(welcome))
    return initiator, enclave


def exchange(initiator: Session, enclave: Session, now: float = NOW) -> tuple[Exchange, Reply]:
    frame, ex = initiator.seal_request(b'{"path":"/v1/chat/completions"}', b"{}", now)
    return ex, enclave.open_request(payload(frame), now)[2]


def chunks(reply: Reply, count: int, final: bool = True) -> list[bytes]:
    out = [payload(reply.chunk(b"token %d" % i)) for i in range(count - 1)]
    return [*out, payload(reply.chunk(b"last", final=final))]


def refused(check: str, action: Callable[[], object]) -> SealingError:
    with pytest.raises(SealingError) as caught:
        action()
    assert caught.value.check == check, caught.value
    return caught.value


def epoch_of(message: bytes) -> int:
    return int(struct.unpack_from(">I", message, 16)[0])


def counter_of(message: bytes) -> int:
    return int(struct.unpack_from(">Q", message, 20)[0])


# --- the answer's chunks ------------------------------------------------------------------


def test_reordered_chunks_are_refused() -> None:
    ex, reply = exchange(*pair())
    c = chunks(reply, 3)
    ex.open(c[0])
    refused("chunk.order", lambda: ex.open(c[2]))


def test_a_dropped_chunk_is_refused_as_missing() -> None:
    ex, reply = exchange(*pair())
    c = chunks(reply, 4)
    ex.open(c[0])
    error = refused("chunk.order", lambda: ex.open(c[2]))
    assert "chunk 1 is missing" in error.detail


def test_a_replayed_chunk_is_refused() -> None:
    ex, reply = exchange(*pair())
    c = chunks(reply, 3)
    ex.open(c[0])
    ex.open(c[1])
    refused("session.replay", lambda: ex.open(c[1]))


def test_a_chunk_of_another_request_is_refused() -> None:
    initiator, enclave = pair()
    ex_a, _reply_a = exchange(initiator, enclave)
    _ex_b, reply_b = exchange(initiator, enclave)
    refused("session.open", lambda: ex_a.open(chunks(reply_b, 1)[0]))


def test_a_chunk_of_another_session_is_refused() -> None:
    ex, _ = exchange(*pair())
    _, other_reply = exchange(*pair())
    refused("session.id", lambda: ex.open(chunks(other_reply, 1)[0]))


def test_a_chunk_after_the_final_one_is_refused_by_both_ends() -> None:
    initiator, enclave = pair()
    ex, reply = exchange(initiator, enclave)
    (last,) = chunks(reply, 1)
    refused("chunk.final", lambda: reply.chunk(b"more"))
    ex.open(last)
    assert ex.finished
    _, reply_b = exchange(initiator, enclave)
    refused("chunk.final", lambda: ex.open(chunks(reply_b, 1)[0]))


def test_an_answer_without_its_final_chunk_is_not_finished() -> None:
    ex, reply = exchange(*pair())
    for c in chunks(reply, 3, final=False):
        ex.open(c)
    assert not ex.finished and ex.chunks == 3


@pytest.mark.parametrize(
    "at", [0, 17, 25, 28, 29, -1], ids=["id", "epoch", "ctr", "flags", "ct", "tag"]
)
def test_a_tampered_chunk_is_refused(at: int) -> None:
    ex, reply = exchange(*pair())
    (good,) = chunks(reply, 1)
    bad = bytearray(good)
    bad[at] ^= 0x01
    refused(_tamper_check(at), lambda: ex.open(bytes(bad)))
    assert ex.open(good) == b"last"


def _tamper_check(at: int) -> str:
    return {0: "session.id", 17: "session.epoch"}.get(at, "session.open")


def test_chunks_of_an_answer_open_in_order_and_both_ends_hash_the_same() -> None:
    ex, reply = exchange(*pair())
    body = b"".join(reply.chunk(b"piece %d" % i) for i in range(5)) + reply.chunk(b"", True)
    opened = [ex.open(f.payload) for f in FrameDecoder().feed(body)]
    assert opened == [b"piece %d" % i for i in range(5)] + [b""]
    assert ex.finished and reply.finished
    assert ex.response_sha256 == reply.response_sha256
    assert ex.request_sha256 == reply.request_sha256


def test_a_relay_counts_and_hashes_chunks_without_keys() -> None:
    ex, reply = exchange(*pair())
    observer = session.ChunkObserver()
    for c in chunks(reply, 4):
        observer.observe(c)
        ex.open(c)
    assert observer.chunks == 4 and observer.finished
    assert observer.response_sha256 == reply.response_sha256 == ex.response_sha256


def test_a_relay_refuses_a_chunk_after_the_final_one_as_the_ends_do() -> None:
    """Else the relay's `finished` would follow the last chunk's flag: a final chunk, then
    one more without it, and the relay would take the answer as unfinished (or finished
    twice) where every end refuses it."""
    _, reply = exchange(*pair())
    observer = session.ChunkObserver()
    for c in chunks(reply, 2):
        observer.observe(c)
    assert observer.finished
    refused("chunk.final", lambda: observer.observe(chunks(reply, 1)[0]))
    assert observer.chunks == 2 and observer.finished


# --- requests -----------------------------------------------------------------------------


def test_a_replayed_request_is_refused() -> None:
    initiator, enclave = pair()
    frame, _ = initiator.seal_request(b"m", b"b", NOW)
    enclave.open_request(payload(frame), NOW)
    refused("session.replay", lambda: enclave.open_request(payload(frame), NOW + 1))


def test_a_request_of_another_session_is_refused() -> None:
    initiator, _ = pair()
    _, other_enclave = pair()
    frame, _ = initiator.seal_request(b"m", b"b", NOW)
    refused("session.id", lambda: other_enclave.open_request(payload(frame), NOW))


def test_a_request_spliced_into_another_session_under_its_id_fails_to_open() -> None:
    initiator, _ = pair()
    _, other_enclave = pair()
    frame, _ = initiator.seal_request(b"m", b"b", NOW)
    spliced = other_enclave.id + payload(frame)[16:]
    refused("session.open", lambda: other_enclave.open_request(spliced, NOW))


@pytest.mark.parametrize("at", [31, 33, -1], ids=["meta", "ciphertext", "tag"])
def test_a_tampered_request_is_refused_and_burns_no_counter(at: int) -> None:
    initiator, enclave = pair()
    frame, _ = initiator.seal_request(b"model=a", b"body", NOW)
    good = payload(frame)
    bad = bytearray(good)
    bad[at] ^= 0x01
    refused("session.open", lambda: enclave.open_request(bytes(bad), NOW))
    assert enclave.open_request(good, NOW)[:2] == (b"model=a", b"body")


def test_a_forged_high_counter_does_not_slide_the_window() -> None:
    initiator, enclave = pair()
    first, _ = initiator.seal_request(b"m", b"b", NOW)
    second, _ = initiator.seal_request(b"m", b"b", NOW)
    forged = bytearray(payload(second))
    forged[20:28] = (10**12).to_bytes(8, "big")
    refused("session.open", lambda: enclave.open_request(bytes(forged), NOW))
    enclave.open_request(payload(first), NOW)
    enclave.open_request(payload(second), NOW)


def test_concurrent_requests_open_out_of_order_once_each() -> None:
    initiator, enclave = pair()
    frames = [payload(initiator.seal_request(b"m", b"%d" % i, NOW)[0]) for i in range(64)]
    order = list(range(64))
    random.Random(7).shuffle(order)
    assert [enclave.open_request(frames[i], NOW)[1] for i in order] == [b"%d" % i for i in order]
    refused("session.replay", lambda: enclave.open_request(frames[order[10]], NOW))


def test_a_request_fallen_out_of_the_replay_window_is_refused() -> None:
    initiator, enclave = pair()
    frames = [
        payload(initiator.seal_request(b"m", b"b", NOW)[0]) for _ in range(session.WINDOW + 1)
    ]
    enclave.open_request(frames[-1], NOW)
    enclave.open_request(frames[1], NOW)  # exactly WINDOW - 1 behind: still inside
    error = refused("session.replay", lambda: enclave.open_request(frames[0], NOW))
    assert "too old" in error.detail


def test_only_each_end_does_its_own_part() -> None:
    initiator, enclave = pair()
    refused("session.role", lambda: enclave.seal_request(b"m", b"b", NOW))
    frame, _ = initiator.seal_request(b"m", b"b", NOW)
    refused("session.role", lambda: initiator.open_request(payload(frame), NOW))


# --- the lease ------------------------------------------------------------------------------


def test_a_session_is_refused_once_its_lease_ended() -> None:
    initiator, enclave = pair(expires_at=NOW + 600)
    frame, _ = initiator.seal_request(b"m", b"b", NOW + 599)
    assert enclave.alive(NOW + 599) and not enclave.alive(NOW + 600)
    refused("session.expired", lambda: enclave.open_request(payload(frame), NOW + 600))
    refused("session.expired", lambda: initiator.seal_request(b"m", b"b", NOW + 600))
    enclave.open_request(payload(frame), NOW + 599)


def test_a_closed_session_refuses_everything() -> None:
    initiator, enclave = pair()
    frame, _ = initiator.seal_request(b"m", b"b", NOW)
    enclave.close()
    initiator.close()
    assert not enclave.alive(NOW) and not initiator.alive(NOW)
    refused("session.expired", lambda: enclave.open_request(payload(frame), NOW))
    refused("session.expired", lambda: initiator.seal_request(b"m", b"b", NOW))


# --- rekeying -------------------------------------------------------------------------------


def test_rekey_by_message_count_in_both_directions() -> None:
    initiator, enclave = pair(rekey_messages=2)
    requests = [payload(initiator.seal_request(b"m", b"%d" % i, NOW)[0]) for i in range(5)]
    assert [epoch_of(r) for r in requests] == [0, 0, 1, 1, 2]
    replies = [enclave.open_request(r, NOW)[2] for r in requests]
    frame, ex = initiator.seal_request(b"m", b"b", NOW)
    reply = enclave.open_request(payload(frame), NOW)[2]
    answer = chunks(reply, 5)
    assert [epoch_of(c) for c in answer] == [0, 0, 1, 1, 2]
    assert [ex.open(c) for c in answer][-1] == b"last"
    assert len(replies) == 5


def test_rekey_by_time_in_both_directions() -> None:
    initiator, enclave = pair(rekey_seconds=60)
    times = [NOW, NOW + 30, NOW + 61, NOW + 100, NOW + 122]
    requests = [payload(initiator.seal_request(b"m", b"b", t)[0]) for t in times]
    assert [epoch_of(r) for r in requests] == [0, 0, 1, 1, 2]
    replies = [enclave.open_request(r, t)[2] for r, t in zip(requests, times, strict=True)]
    # The enclave rekeys by the time it was last told (its latest request) ...
    assert epoch_of(payload(replies[0].chunk(b"a"))) == 1
    # ... or by the time a chunk is sealed at.
    assert epoch_of(payload(replies[0].chunk(b"b", now=NOW + 183))) == 2


def test_the_receiver_takes_the_previous_epoch_and_two_ahead_but_no_further() -> None:
    initiator, enclave = pair(rekey_messages=1)
    r = [payload(initiator.seal_request(b"m", b"%d" % i, NOW)[0]) for i in range(9)]
    assert [epoch_of(m) for m in r] == list(range(9))
    steps = [(0, None), (3, "session.epoch"), (2, None), (1, None), (4, None), (3, None),
             (6, None), (8, None), (5, "session.epoch"), (7, None)]  # fmt: skip
    for index, check in steps:
        if check is None:
            assert enclave.open_request(r[index], NOW)[1] == b"%d" % index
        else:
            refused(check, partial(enclave.open_request, r[index], NOW))


def test_chunks_sealed_before_a_rekey_still_open_but_not_two_epochs_late() -> None:
    initiator, enclave = pair(rekey_messages=1)
    ex_a, reply_a = exchange(initiator, enclave)
    ex_b, reply_b = exchange(initiator, enclave)
    a0 = payload(reply_a.chunk(b"a0"))  # epoch 0
    b0 = payload(reply_b.chunk(b"b0"))  # epoch 1
    a1 = payload(reply_a.chunk(b"a1"))  # epoch 2
    b1, b2 = payload(reply_b.chunk(b"b1")), payload(reply_b.chunk(b"b2"))  # epochs 3, 4
    ex_b.open(b0)
    assert ex_a.open(a0) == b"a0"  # the previous epoch, still in flight
    ex_b.open(b1)
    ex_b.open(b2)
    refused("session.epoch", lambda: ex_a.open(a1))


def test_a_chunk_three_epochs_ahead_is_refused() -> None:
    ex, reply = exchange(*pair(rekey_messages=1))
    c = chunks(reply, 4)
    ex.open(c[0])
    refused("session.epoch", lambda: ex.open(c[3]))
    ex.open(c[1])


# --- the handshake ---------------------------------------------------------------------------


def test_handshake_confirms_and_both_ends_share_the_receipt_key() -> None:
    initiator, enclave = pair()
    assert initiator.confirmed and enclave.confirmed
    assert initiator.id == enclave.id
    assert initiator.receipt_key == enclave.receipt_key and len(initiator.receipt_key) == 32
    assert initiator.receipt_key != pair()[0].receipt_key


def test_a_welcome_of_another_session_does_not_confirm() -> None:
    _, initiator = initiate(ENCLAVE_PUBLIC, params())
    other_hello, _ = initiate(ENCLAVE_PUBLIC, params())
    welcome, _ = accept(
        parse_hello(payload(other_hello)), ENCLAVE_PRIVATE, ENCLAVE_PUBLIC, SIGNING_SHA256, NOW
    )
    refused("session.confirm", lambda: initiator.confirm(payload(welcome)))
    assert not initiator.confirmed


def test_a_relay_that_alters_the_hello_transcript_is_caught_by_the_confirm() -> None:
    hello, initiator = initiate(ENCLAVE_PUBLIC, params())
    parsed = parse_hello(payload(hello))
    longer = replace(parsed.params, expires_at=NOW + 7200).transcript()
    altered = parsed.enc + len(longer).to_bytes(2, "big") + longer
    welcome, enclave = accept(
        parse_hello(altered), ENCLAVE_PRIVATE, ENCLAVE_PUBLIC, SIGNING_SHA256, NOW
    )
    refused("session.confirm", lambda: initiator.confirm(payload(welcome)))
    frame, _ = initiator.seal_request(b"m", b"b", NOW)
    refused("session.open", lambda: enclave.open_request(payload(frame), NOW))


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"created_at": NOW - 200, "expires_at": NOW - 1}, "session.time"),
        ({"created_at": NOW + 200, "expires_at": NOW + 100}, "session.time"),
        ({"created_at": NOW - 301}, "session.time"),
        ({"created_at": NOW + 301, "expires_at": NOW + 4000}, "session.time"),
        ({"expires_at": NOW + 24 * 3600 + 1}, "session.time"),
        ({"rekey_messages": 0}, "session.rekey"),
        ({"rekey_seconds": 0}, "session.rekey"),
        ({"rekey_seconds": 24 * 3600 + 1}, "session.rekey"),
        ({"enclave_signing_sha256": "0" * 64}, "session.signing_key"),
    ],
    ids=[
        "expired",
        "ends-before-it-starts",
        "too-old",
        "from-the-future",
        "lifetime",
        "rekey-0",
        "rekey-0s",
        "rekey-long",
        "signing-key",
    ],
)
def test_the_enclave_refuses_a_hello(changes: dict[str, Any], check: str) -> None:
    hello = parse_hello(payload(initiate(ENCLAVE_PUBLIC, params(**changes))[0]))
    refused(check, lambda: accept(hello, ENCLAVE_PRIVATE, ENCLAVE_PUBLIC, SIGNING_SHA256, NOW))


def test_the_enclave_refuses_a_hello_for_another_key() -> None:
    other = params(enclave_hpke_sha256=hashlib.sha256(OTHER_PUBLIC).hexdigest())
    hello = parse_hello(payload(initiate(OTHER_PUBLIC, other)[0]))
    refused(
        "session.key", lambda: accept(hello, ENCLAVE_PRIVATE, ENCLAVE_PUBLIC, SIGNING_SHA256, NOW)
    )


def test_the_initiator_refuses_params_naming_another_key() -> None:
    wrong = params(enclave_hpke_sha256=hashlib.sha256(OTHER_PUBLIC).hexdigest())
    refused("session.key", lambda: initiate(ENCLAVE_PUBLIC, wrong))


def _gateway_hello(key: ed25519.Ed25519PrivateKey, named: ed25519.Ed25519PrivateKey) -> bytes:
    named_public = named.public_key().public_bytes_raw()
    gateway = params(initiator="gateway:" + hashlib.sha256(named_public).hexdigest())
    return payload(initiate(ENCLAVE_PUBLIC, gateway, sign=key.sign)[0])


def _malformed_gateway_hello(key: ed25519.Ed25519PrivateKey) -> bytes:
    return payload(initiate(ENCLAVE_PUBLIC, params(initiator="gateway:"), sign=key.sign)[0])


def test_a_signed_hello_verifies_with_its_gateway_key() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    hello = parse_hello(_gateway_hello(key, key))
    hello.check_signature(key.public_key().public_bytes_raw())
    assert hello.signature is not None and len(hello.signature) == 64
    accept(hello, ENCLAVE_PRIVATE, ENCLAVE_PUBLIC, SIGNING_SHA256, NOW)


def test_signed_hellos_are_refused_when_anything_is_off() -> None:
    key, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    public, other_public = (k.public_key().public_bytes_raw() for k in (key, other))
    good = _gateway_hello(key, key)
    altered_enc = bytes([good[0] ^ 1]) + good[1:]
    unsigned = payload(initiate(ENCLAVE_PUBLIC, params())[0])
    cases = [
        (good, other_public),  # another gateway's key
        (altered_enc, public),  # a byte of the hello changed
        (unsigned, public),  # not signed at all
        (_gateway_hello(other, key), other_public),  # names key x, signed by y
        (_malformed_gateway_hello(key), public),  # names no key at all
    ]
    for raw, verify_with in cases:
        hello = parse_hello(raw)
        refused("session.signature", partial(hello.check_signature, verify_with))


_GOOD_TRANSCRIPT = params().transcript()
_ENC = bytes(32)


def _hello_bytes(transcript: bytes, extra: bytes = b"") -> bytes:
    return _ENC + len(transcript).to_bytes(2, "big") + transcript + extra


@pytest.mark.parametrize(
    ("raw", "check"),
    [
        (b"", "session.hello"),
        (_ENC + b"\x00", "session.hello"),
        (_ENC + b"\x00\x50" + b"{}", "session.hello"),
        (_hello_bytes(_GOOD_TRANSCRIPT, b"x" * 10), "session.hello"),
        (_hello_bytes(b"not json"), "session.transcript"),
        (_hello_bytes(b"[]"), "session.transcript"),
        (_hello_bytes(_GOOD_TRANSCRIPT.replace(b",", b", ")), "session.transcript"),
        (_hello_bytes(_GOOD_TRANSCRIPT.replace(b'"v":2', b'"v":1')), "session.transcript"),
        (
            _hello_bytes(_GOOD_TRANSCRIPT.replace(b'{"attested"', b'{"x":1,"attested"')),
            "session.transcript",
        ),
        (
            _hello_bytes(_GOOD_TRANSCRIPT.replace(b'"session_id":"', b'"session_id":"00')),
            "session.transcript",
        ),
        (
            _hello_bytes(_GOOD_TRANSCRIPT.replace(b'"rekey_seconds":300', b'"rekey_seconds":true')),
            "session.transcript",
        ),
        (_hello_bytes(b" " * 9000), "session.transcript"),
    ],
    ids=[
        "empty",
        "no-length",
        "cut",
        "trailing",
        "not-json",
        "not-object",
        "not-canonical",
        "v1",
        "unknown-field",
        "session-id",
        "bool-int",
        "oversize",
    ],
)
def test_malformed_hellos_are_refused_naming_the_check(raw: bytes, check: str) -> None:
    refused(check, lambda: parse_hello(raw))


def test_the_transcript_round_trips() -> None:
    p = params()
    assert SessionParams.from_transcript(p.transcript()) == p


# --- one-shot requests ------------------------------------------------------------------------


def test_a_oneshot_request_round_trips() -> None:
    p = params(expires_at=NOW + 300)
    frame, ex = oneshot(ENCLAVE_PUBLIC, p, b"meta", b"body")
    assert decode_one(frame).type is FrameType.ONESHOT
    hello, meta, body, reply = open_oneshot(
        payload(frame), ENCLAVE_PRIVATE, ENCLAVE_PUBLIC, SIGNING_SHA256, NOW
    )
    assert (hello.params, meta, body) == (p, b"meta", b"body")
    assert [ex.open(c) for c in chunks(reply, 2)] == [b"token 0", b"last"]
    assert ex.finished and ex.response_sha256 == reply.response_sha256


@pytest.mark.parametrize("cut", [1, 20, 200], ids=["length", "hello", "request"])
def test_a_cut_oneshot_is_refused(cut: int) -> None:
    raw = payload(oneshot(ENCLAVE_PUBLIC, params(), b"meta", b"body")[0])
    with pytest.raises(SealingError):
        open_oneshot(raw[:cut], ENCLAVE_PRIVATE, ENCLAVE_PUBLIC, SIGNING_SHA256, NOW)


def test_a_oneshot_for_another_enclave_is_refused() -> None:
    other = params(enclave_hpke_sha256=hashlib.sha256(OTHER_PUBLIC).hexdigest())
    raw = payload(oneshot(OTHER_PUBLIC, other, b"meta", b"body")[0])
    refused(
        "session.key",
        lambda: open_oneshot(raw, ENCLAVE_PRIVATE, ENCLAVE_PUBLIC, SIGNING_SHA256, NOW),
    )


# --- threads -------------------------------------------------------------------------------------


def test_threads_sealing_chunks_get_unique_counters_and_each_answer_opens() -> None:
    initiator, enclave = pair()
    pairs = [exchange(initiator, enclave) for _ in range(8)]
    sealed: list[list[bytes]] = [[] for _ in pairs]

    def seal(i: int) -> None:
        sealed[i] = chunks(pairs[i][1], 300)

    threads = [threading.Thread(target=seal, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counters = [counter_of(c) for answer in sealed for c in answer]
    assert len(set(counters)) == len(counters) == 8 * 300
    for (ex, _), answer in zip(pairs, sealed, strict=True):
        assert [ex.open(c) for c in answer][-1] == b"last"


def test_threads_sealing_and_opening_requests_lose_none() -> None:
    initiator, enclave = pair()
    opened: list[bytes] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(200):
            frame, _ = initiator.seal_request(b"m", b"%d-%d" % (n, i), NOW)
            body = enclave.open_request(payload(frame), NOW)[1]
            with lock:
                opened.append(body)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(opened) == sorted(b"%d-%d" % (n, i) for n in range(6) for i in range(200))


def test_a_sender_out_of_epochs_ends_the_session_instead_of_wrapping() -> None:
    sender = ratchet.Sender(bytes(32), 0.0, rekey_messages=1, rekey_seconds=300)
    sender.keys = (ratchet.MAX_EPOCH, *sender.keys[1:])
    assert sender.next(None)[0][0] == ratchet.MAX_EPOCH
    refused("session.expired", lambda: sender.next(None))
