"""Wire v2 receipts: MAC tags for the gateway, signed Merkle roots and proof bundles for
everyone else. Every attack named in issue 16 is refused with its named check."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import threading
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from teeroute.sealing import merkle
from teeroute.sealing.errors import ReceiptInvalid
from teeroute.sealing.frames import FrameType, decode_one
from teeroute.sealing.receipt_body import MAX_BODY, canonical
from teeroute.sealing.receipt_mac import (
    CLIENT_TAG,
    GATEWAY_TAG,
    RootBatcher,
    RootTracker,
    check_tag,
    issue_receipt,
    parse_receipt,
    receipt_frame,
    receipt_payload,
    verify_bundle,
    verify_receipt_v2,
)
from teeroute.sealing.roots import parse_root, proof_bundle, sign_root

HPKE_SHA = "a1" * 32


class Enclave:
    """An enclave's receipt side: its attested Ed25519 key and one gateway session."""

    def __init__(self, batch_size: int = 4, interval_s: float = 5.0) -> None:
        self.key = ed25519.Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.signing_sha = hashlib.sha256(self.public).hexdigest()
        self.session_id = os.urandom(16)
        self.receipt_key = os.urandom(32)
        self.batcher = RootBatcher(
            session_id=self.session_id, sign=self.key.sign, signing_public=self.public,
            hpke_key_sha256=HPKE_SHA, batch_size=batch_size, interval_s=interval_s,
        )  # fmt: skip

    def fields(self, n: int = 0, **changes: Any) -> dict[str, Any]:
        return {
            "request_id": f"req-{n}", "model": "m", "served_model": "m-8b",
            "input_tokens": 200, "output_tokens": 10 + n, "usage_source": "engine",
            "status": 200, "complete": True, "request_sha256": "b2" * 32,
            "response_sha256": "c3" * 32, "hpke_key_sha256": HPKE_SHA,
            "signing_key_sha256": self.signing_sha, "issued_at": "2026-12-05T01:00:00Z",
            **changes,
        }  # fmt: skip

    def issue(self, n: int, now: float = 0.0) -> tuple[bytes, bytes | None]:
        """(RECEIPT payload, ROOT payload or None), as the agent sends them."""
        frame, root = issue_receipt(
            self.batcher, self.fields(n), [(GATEWAY_TAG, self.receipt_key)], now
        )
        return decode_one(frame).payload, None if root is None else decode_one(root).payload


def tracker_for(enclave: Enclave, **options: Any) -> RootTracker:
    return RootTracker(session_id=enclave.session_id, hpke_key_sha256=HPKE_SHA, **options)


def batch(enclave: Enclave, tracker: RootTracker, first: int, count: int) -> bytes:
    """Issue `count` receipts, note each at the gateway, and return the ROOT payload."""
    root = None
    for n in range(first, first + count):
        payload, root = enclave.issue(n)
        receipt, tags = parse_receipt(payload)
        check_tag(receipt, tags, GATEWAY_TAG, enclave.receipt_key)
        assert tracker.note(receipt, receipt.request_id, now=0.0) == []
    assert root is not None
    return root


def refused(check: str, call: Callable[[], object]) -> None:
    with pytest.raises(ReceiptInvalid) as caught:
        call()
    assert caught.value.check == check, caught.value


# -- the receipt and its tags --------------------------------------------------------------


def test_receipt_frame_round_trips_with_both_tags() -> None:
    enclave, client_key = Enclave(), os.urandom(32)
    fields = enclave.fields(session_id=enclave.session_id.hex(), index=7)
    frame = decode_one(receipt_frame(fields, [(GATEWAY_TAG, enclave.receipt_key),
                                              (CLIENT_TAG, client_key)]))  # fmt: skip
    assert frame.type is FrameType.RECEIPT
    receipt, tags = parse_receipt(frame.payload)
    check_tag(receipt, tags, GATEWAY_TAG, enclave.receipt_key)
    check_tag(receipt, tags, CLIENT_TAG, client_key)
    assert (receipt.index, receipt.output_tokens, receipt.request_id) == (7, 10, "req-0")
    assert receipt.leaf == merkle.leaf_hash(receipt.body)
    assert receipt.body == canonical({"v": 2, **fields})


def test_a_tampered_receipt_fails_its_mac() -> None:
    enclave = Enclave()
    payload, _ = enclave.issue(0)
    forged = payload.replace(b'"output_tokens":10', b'"output_tokens":99')
    assert forged != payload
    receipt, tags = parse_receipt(forged)  # still a well-formed receipt...
    assert receipt.output_tokens == 99
    refused("receipt.mac", lambda: check_tag(receipt, tags, GATEWAY_TAG, enclave.receipt_key))


def test_a_tag_made_with_another_key_or_missing_is_refused() -> None:
    enclave = Enclave()
    receipt, tags = parse_receipt(enclave.issue(0)[0])
    refused("receipt.mac", lambda: check_tag(receipt, tags, GATEWAY_TAG, os.urandom(32)))
    refused("receipt.mac", lambda: check_tag(receipt, tags, CLIENT_TAG, enclave.receipt_key))


def _payload(body: bytes, tags: bytes = b"\x00") -> bytes:
    return struct.pack(">I", len(body)) + body + tags


BODY = canonical({"v": 2})
FRAME_CASES = {
    "empty": b"",
    "cut off in the body": struct.pack(">I", 100) + b"{}",
    "body over 8 KiB": _payload(b"x" * (MAX_BODY + 1)),
    "five tags": _payload(BODY, b"\x05" + (b"\x01" + bytes(32)) * 5),
    "tag count without tags": _payload(BODY, b"\x01"),
    "trailing bytes": _payload(BODY, b"\x00junk"),
    "unknown tag kind": _payload(BODY, b"\x01\x03" + bytes(32)),
    "repeated tag kind": _payload(BODY, b"\x02" + (b"\x01" + bytes(32)) * 2),
}


@pytest.mark.parametrize("payload", FRAME_CASES.values(), ids=FRAME_CASES.keys())
def test_a_malformed_receipt_payload_is_refused_before_parsing(payload: bytes) -> None:
    refused("receipt.frame", lambda: parse_receipt(payload))


FIELD_CASES: dict[str, list[Any]] = {
    "session_id": ["ab", 5, "G" * 32],
    "index": [-1, 1.0, "1", True, 1 << 60],
    "request_id": ["x" * 257, None],
    "input_tokens": [-1, 10**9 + 1, 2.5, False],
    "usage_source": ["guessed"],
    "status": [True, "200", 1000],
    "complete": [1, "true"],
    "request_sha256": ["B2" * 32, "b2" * 31],
    "issued_at": ["2026-12-05 01:00:00", "yesterday"],
}


@pytest.mark.parametrize(
    ("field", "value"), [(f, v) for f, values in FIELD_CASES.items() for v in values]
)
def test_every_field_is_typed_and_a_bad_one_is_named(field: str, value: Any) -> None:
    enclave = Enclave()
    doc = {"v": 2, **enclave.fields(session_id="ab" * 16, index=0), field: value}
    body = canonical(doc)
    refused("receipt.format", lambda: parse_receipt(_payload(body)))
    with pytest.raises(ReceiptInvalid, match=f"^receipt.format: {field}:"):
        parse_receipt(_payload(body))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda doc: json.dumps(doc).encode(),  # spaces: not canonical
        lambda doc: canonical(doc)[:-1] + b',"model":"other"}',  # a duplicate key
        lambda doc: canonical({**doc, "extra": 1}),
        lambda doc: canonical({k: v for k, v in doc.items() if k != "model"}),
        lambda doc: canonical({**doc, "v": 1}),
        lambda doc: b"[1, 2]",
        lambda doc: b"\xff",
    ],
)
def test_a_body_that_is_not_one_canonical_v2_receipt_is_refused(
    mutate: Callable[[dict[str, Any]], bytes],
) -> None:
    doc = {"v": 2, **Enclave().fields(session_id="ab" * 16, index=0)}
    parse_receipt(_payload(canonical(doc)))  # the unmutated body reads
    refused("receipt.format", lambda: parse_receipt(_payload(mutate(doc))))


def test_verify_receipt_v2_names_what_does_not_match() -> None:
    enclave = Enclave()
    receipt, _ = parse_receipt(enclave.issue(0)[0])
    seen: dict[str, Any] = {
        "session_id": enclave.session_id, "index": 0, "request_id": "req-0",
        "request_sha256": "b2" * 32, "response_sha256": "c3" * 32,
        "hpke_key_sha256": HPKE_SHA, "signing_key_sha256": enclave.signing_sha,
    }  # fmt: skip
    assert verify_receipt_v2(receipt, **seen) is receipt
    wrong: dict[str, tuple[str, Any]] = {
        "session_id": ("receipt.session", os.urandom(16)), "index": ("receipt.index", 1),
        "request_id": ("receipt.request_id", "req-1"),
        "request_sha256": ("receipt.request", "00" * 32),
        "response_sha256": ("receipt.response", "00" * 32),
        "hpke_key_sha256": ("receipt.hpke_key", "00" * 32),
        "signing_key_sha256": ("receipt.signing_key", "00" * 32),
    }  # fmt: skip
    for name, (check, value) in wrong.items():
        with pytest.raises(ReceiptInvalid) as caught:
            verify_receipt_v2(receipt, **{**seen, name: value})
        assert caught.value.check == check


# -- the batcher -------------------------------------------------------------------------


def test_batcher_signs_a_root_every_k_receipts() -> None:
    enclave = Enclave(batch_size=3)
    roots = [enclave.issue(n, now=0.0)[1] for n in range(7)]
    assert [root is not None for root in roots] == [False, False, True] * 2 + [False]
    first, second = (parse_root(root) for root in roots if root is not None)
    assert (first.first_index, first.count, second.first_index, second.count) == (0, 3, 3, 3)
    assert enclave.batcher.pending == 1 and enclave.batcher.next_index == 7


def test_batcher_signs_what_it_holds_once_the_oldest_waited_s_seconds() -> None:
    enclave = Enclave(batch_size=100, interval_s=5.0)
    assert enclave.issue(0, now=100.0)[1] is None
    assert not enclave.batcher.due(104.9)
    assert enclave.issue(1, now=104.9)[1] is None
    assert enclave.batcher.due(105.0)
    root = enclave.issue(2, now=105.0)[1]
    assert root is not None and parse_root(root).count == 3
    assert enclave.issue(3, now=200.0)[1] is None  # the clock starts again at the next one


def test_batcher_flush_signs_whatever_is_pending() -> None:
    enclave = Enclave(batch_size=100)
    assert enclave.batcher.flush(0.0) is None
    enclave.issue(0)
    enclave.issue(1)
    frame = enclave.batcher.flush(1.0)
    assert frame is not None and decode_one(frame).type is FrameType.ROOT
    assert parse_root(decode_one(frame).payload).count == 2
    assert enclave.batcher.flush(2.0) is None


def test_batcher_refuses_a_receipt_out_of_order_or_of_another_session() -> None:
    enclave = Enclave()
    from teeroute.sealing.receipt_body import receipt_body

    with pytest.raises(ValueError):
        enclave.batcher.add(receipt_body(enclave.fields(session_id=enclave.session_id.hex(),
                                                        index=1)), 0.0)  # fmt: skip
    with pytest.raises(ValueError):
        enclave.batcher.add(receipt_body(enclave.fields(session_id="ab" * 16, index=0)), 0.0)


def test_receipts_issued_from_many_threads_are_numbered_once_each() -> None:
    enclave = Enclave(batch_size=8)
    indexes: list[int] = []

    def issue(worker: int) -> None:
        for _ in range(25):
            frame, _ = issue_receipt(
                enclave.batcher, enclave.fields(worker), [(GATEWAY_TAG, b"k")], 0.0
            )
            indexes.append(parse_receipt(decode_one(frame).payload)[0].index)

    threads = [threading.Thread(target=issue, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(indexes) == list(range(100))


# -- the tracker and proof bundles ---------------------------------------------------------


def test_every_receipt_of_a_signed_batch_gets_a_proof_anyone_can_check() -> None:
    enclave = Enclave(batch_size=5)
    tracker = tracker_for(enclave)
    proofs = tracker.on_root(batch(enclave, tracker, 0, 5), enclave.signing_sha)
    assert [request_id for request_id, _ in proofs] == [f"req-{n}" for n in range(5)]
    for n, (_, bundle) in enumerate(proofs):
        receipt = verify_bundle(bundle, enclave.signing_sha)
        assert (receipt.index, receipt.request_id) == (n, f"req-{n}")
        assert verify_bundle(bundle, None) == receipt  # the key taken from the root
    assert tracker.pending == 0


def test_a_root_not_signed_by_the_attested_key_is_refused() -> None:
    enclave, impostor = Enclave(batch_size=2), Enclave()
    tracker = tracker_for(enclave)
    batch(enclave, tracker, 0, 2)
    leaves = [parse_receipt(enclave.issue(n)[0])[0].leaf for n in (2, 3)]
    other = sign_root(sign=impostor.key.sign, signing_public=impostor.public,
                      session_id=enclave.session_id, first_index=0, leaves=leaves,
                      hpke_key_sha256=HPKE_SHA, now=0.0)  # fmt: skip
    refused("root.key", lambda: tracker.on_root(other, enclave.signing_sha))
    # The attested public key named in the document, but signed by another key:
    claimed = sign_root(sign=impostor.key.sign, signing_public=enclave.public,
                        session_id=enclave.session_id, first_index=0, leaves=leaves,
                        hpke_key_sha256=HPKE_SHA, now=0.0)  # fmt: skip
    refused("root.signature", lambda: tracker.on_root(claimed, enclave.signing_sha))
    assert tracker.pending == 2  # nothing taken


def test_a_wrong_root_is_refused() -> None:
    enclave = Enclave(batch_size=3)
    tracker = tracker_for(enclave)
    root = batch(enclave, tracker, 0, 3)
    signed = parse_root(root)
    # The document altered after signing:
    altered = root.replace(signed.root.hex().encode(), b"00" * 32)
    refused("root.signature", lambda: tracker.on_root(altered, enclave.signing_sha))
    # Signed, but over other receipts than the ones the gateway got:
    others = [merkle.leaf_hash(bytes([n])) for n in range(3)]
    lying = sign_root(sign=enclave.key.sign, signing_public=enclave.public,
                      session_id=enclave.session_id, first_index=0, leaves=others,
                      hpke_key_sha256=HPKE_SHA, now=0.0)  # fmt: skip
    refused("root.mismatch", lambda: tracker.on_root(lying, enclave.signing_sha))
    # Leaves sent that do not make the signed root:
    swapped = root[: -3 * 32] + b"".join(others)
    refused("root.mismatch", lambda: tracker.on_root(swapped, enclave.signing_sha))
    refused("root.format", lambda: tracker.on_root(root[:-1], enclave.signing_sha))
    assert len(tracker.on_root(root, enclave.signing_sha)) == 3  # the true one still works


def test_a_root_of_another_session_or_enclave_key_is_refused() -> None:
    enclave = Enclave(batch_size=1)
    tracker = tracker_for(enclave)
    elsewhere = RootTracker(session_id=os.urandom(16))
    root = batch(enclave, tracker, 0, 1)
    refused("root.session", lambda: elsewhere.on_root(root, enclave.signing_sha))
    other_key = RootTracker(session_id=enclave.session_id, hpke_key_sha256="ff" * 32)
    refused("root.key", lambda: other_key.on_root(root, enclave.signing_sha))


def test_a_proof_for_another_batch_or_place_is_refused() -> None:
    enclave = Enclave(batch_size=4)
    tracker = tracker_for(enclave)
    first = dict(tracker.on_root(batch(enclave, tracker, 0, 4), enclave.signing_sha))
    second = dict(tracker.on_root(batch(enclave, tracker, 4, 4), enclave.signing_sha))
    bundle = json.loads(first["req-1"])
    # Batch 2's receipt at the same place, with batch 1's root and path:
    moved = {**bundle, "receipt": json.loads(second["req-5"])["receipt"]}
    refused("proof.batch", lambda: verify_bundle(moved, enclave.signing_sha))
    # Another receipt of the same batch, claimed at this one's place:
    swapped = {**bundle, "receipt": json.loads(first["req-2"])["receipt"]}
    refused("proof.batch", lambda: verify_bundle(swapped, enclave.signing_sha))
    refused("proof.batch", lambda: verify_bundle({**bundle, "index": 2}, enclave.signing_sha))
    refused("proof.batch", lambda: verify_bundle({**bundle, "size": 5}, enclave.signing_sha))
    bent = {**bundle, "path": ["00" * 32, *bundle["path"][1:]]}
    refused("proof.path", lambda: verify_bundle(bent, enclave.signing_sha))
    refused("proof.path", lambda: verify_bundle({**bundle, "path": []}, enclave.signing_sha))


def test_a_tampered_receipt_in_a_bundle_is_refused() -> None:
    enclave = Enclave(batch_size=2)
    tracker = tracker_for(enclave)
    bundle = json.loads(tracker.on_root(batch(enclave, tracker, 0, 2), enclave.signing_sha)[0][1])
    forged = bundle["receipt"].replace('"output_tokens":10', '"output_tokens":99')
    refused("proof.path", lambda: verify_bundle({**bundle, "receipt": forged}, enclave.signing_sha))
    refused("root.key", lambda: verify_bundle(bundle, "00" * 32))
    signature = bytearray(base64.b64decode(bundle["signature"]))
    signature[0] ^= 1
    resigned = {**bundle, "signature": base64.b64encode(signature).decode()}
    refused("root.signature", lambda: verify_bundle(resigned, enclave.signing_sha))
    refused("receipt.format", lambda: verify_bundle({**bundle, "receipt": "{}"}, None))


def test_a_bundle_whose_receipt_names_another_signing_key_is_refused() -> None:
    enclave = Enclave(batch_size=1)
    body, root = enclave.batcher.issue(enclave.fields(0, signing_key_sha256="ee" * 32), 0.0)
    assert root is not None
    signed = parse_root(decode_one(root).payload)
    receipt = parse_receipt(_payload(body))[0]
    bundle = proof_bundle(receipt, signed, [])
    refused("root.key", lambda: verify_bundle(bundle, enclave.signing_sha))


def test_an_oversized_receipt_in_a_bundle_is_refused_before_it_is_parsed() -> None:
    enclave = Enclave(batch_size=1)
    tracker = tracker_for(enclave)
    bundle = json.loads(tracker.on_root(batch(enclave, tracker, 0, 1), enclave.signing_sha)[0][1])
    big = json.dumps({"model": "é" * 5000}, ensure_ascii=False)  # 5 k characters, 10 KB
    with pytest.raises(ReceiptInvalid, match=r"^receipt\.format: body: over"):
        verify_bundle({**bundle, "receipt": big}, None)


@pytest.mark.parametrize(
    "bundle",
    [b"not json", b"[]", b"{}", "x" * 70000, json.dumps({"v": 1}),
     {"v": 2, "receipt": "", "root": "", "signature": "", "index": -1, "size": 1, "path": []},
     {"v": 2, "receipt": "", "root": "", "signature": "", "index": 0, "size": 1,
      "path": ["00" * 32] * 65},
     {"v": 2, "receipt": "", "root": "", "signature": "!", "index": 0, "size": 1,
      "path": ["zz"]}],
)  # fmt: skip
def test_a_malformed_bundle_is_refused_as_proof_format(bundle: Any) -> None:
    refused("proof.format", lambda: verify_bundle(bundle, None))


def test_a_receipt_arriving_after_its_root_is_proven_from_the_recent_root() -> None:
    enclave = Enclave(batch_size=3)
    tracker = tracker_for(enclave)
    late, _ = enclave.issue(0)
    for n in (1, 2):
        payload, root = enclave.issue(n)
        tracker.note(parse_receipt(payload)[0], f"req-{n}", 0.0)
    assert root is not None
    assert [r for r, _ in tracker.on_root(root, enclave.signing_sha)] == ["req-1", "req-2"]
    proofs = tracker.note(parse_receipt(late)[0], "req-0", 1.0)
    assert [r for r, _ in proofs] == ["req-0"]
    assert verify_bundle(proofs[0][1], enclave.signing_sha).index == 0
    assert tracker.overdue(100.0) == []


def test_leaves_that_do_not_make_the_signed_root_are_refused() -> None:
    # The gateway holds receipts 1 and 2 only; the leaf of receipt 0 is swapped in transit.
    enclave = Enclave(batch_size=3)
    tracker = tracker_for(enclave)
    enclave.issue(0)
    root = None
    for n in (1, 2):
        payload, root = enclave.issue(n)
        tracker.note(parse_receipt(payload)[0], f"req-{n}", 0.0)
    assert root is not None
    at = len(root) - 3 * 32
    swapped = root[:at] + merkle.leaf_hash(b"another receipt") + root[at + 32 :]
    refused("root.mismatch", lambda: tracker.on_root(swapped, enclave.signing_sha))
    assert tracker.pending == 2


def test_a_root_holding_another_receipt_than_the_one_noted_is_refused() -> None:
    enclave = Enclave(batch_size=2)
    tracker = tracker_for(enclave)
    receipt, _ = parse_receipt(enclave.issue(0)[0])
    forked = receipt_frame(
        enclave.fields(0, output_tokens=999, session_id=receipt.session_id, index=0),
        [(GATEWAY_TAG, enclave.receipt_key)],
    )
    tracker.note(parse_receipt(decode_one(forked).payload)[0], "req-0", 0.0)
    _, root = enclave.issue(1)
    assert root is not None
    refused("root.mismatch", lambda: tracker.on_root(root, enclave.signing_sha))
    assert tracker.overdue(100.0) == ["req-0"]  # still uncovered: flagged in time


def test_a_second_receipt_with_one_index_or_of_another_session_is_refused() -> None:
    enclave = Enclave()
    tracker = tracker_for(enclave)
    receipt, _ = parse_receipt(enclave.issue(0)[0])
    tracker.note(receipt, "req-0", 0.0)
    refused("receipt.index", lambda: tracker.note(receipt, "req-x", 0.0))
    refused("receipt.session", lambda: RootTracker(session_id=os.urandom(16)).note(
        receipt, "req-0", 0.0))  # fmt: skip


def test_receipts_not_covered_in_time_are_reported_once_as_overdue() -> None:
    enclave = Enclave(batch_size=10, interval_s=5.0)
    tracker = tracker_for(enclave, interval_s=5.0)
    for n, at in ((0, 0.0), (1, 3.0)):
        tracker.note(parse_receipt(enclave.issue(n)[0])[0], f"req-{n}", at)
    assert not tracker.due(4.9) and tracker.due(5.0)
    assert tracker.overdue(6.9, grace=2.0) == []
    assert tracker.overdue(7.0, grace=2.0) == ["req-0"]
    assert tracker.overdue(7.0, grace=2.0) == []
    assert tracker.overdue(10.0, grace=2.0) == ["req-1"]
    assert tracker.pending == 0


def test_tracker_memory_is_bounded_and_what_it_gave_up_is_reported() -> None:
    enclave = Enclave(batch_size=100)
    tracker = tracker_for(enclave, max_pending=3)
    for n in range(5):
        tracker.note(parse_receipt(enclave.issue(n)[0])[0], f"req-{n}", float(n))
    assert tracker.pending == 3
    assert tracker.overdue(0.0) == ["req-0", "req-1"]
    root = enclave.batcher.flush(5.0)
    assert root is not None
    proofs = tracker.on_root(decode_one(root).payload, enclave.signing_sha)
    assert [r for r, _ in proofs] == ["req-2", "req-3", "req-4"]


def test_the_same_root_twice_is_taken_once() -> None:
    enclave = Enclave(batch_size=2)
    tracker = tracker_for(enclave)
    root = batch(enclave, tracker, 0, 2)
    assert len(tracker.on_root(root, enclave.signing_sha)) == 2
    assert tracker.on_root(root, enclave.signing_sha) == []


def test_a_receipt_the_gateway_never_got_does_not_keep_the_others_from_a_proof() -> None:
    enclave = Enclave(batch_size=3)
    tracker = tracker_for(enclave)
    enclave.issue(0)  # its client left: the gateway never read it
    root = None
    for n in (1, 2):
        payload, root = enclave.issue(n)
        tracker.note(parse_receipt(payload)[0], f"req-{n}", 0.0)
    assert root is not None
    assert [r for r, _ in tracker.on_root(root, enclave.signing_sha)] == ["req-1", "req-2"]


def test_receipt_payload_refuses_unknown_or_repeated_tag_kinds() -> None:
    with pytest.raises(ValueError):
        receipt_payload(BODY, [(3, b"k")])
    with pytest.raises(ValueError):
        receipt_payload(BODY, [(1, b"k"), (1, b"k")])


# -- the agent's optional timings ----------------------------------------------------------


def _timed(enclave: Enclave, **timings: Any) -> bytes:
    fields = enclave.fields(session_id=enclave.session_id.hex(), index=0, **timings)
    return decode_one(receipt_frame(fields, [(GATEWAY_TAG, enclave.receipt_key)])).payload


def test_a_receipt_carries_the_agents_timings_and_may_leave_them_out() -> None:
    enclave = Enclave()
    receipt, tags = parse_receipt(_timed(enclave, ttft_us=120_500, tpot_us=9_800))
    check_tag(receipt, tags, GATEWAY_TAG, enclave.receipt_key)
    assert (receipt.ttft_us, receipt.tpot_us) == (120_500, 9_800)
    plain, _ = parse_receipt(_timed(enclave))  # what an agent writes for an older reader
    assert (plain.ttft_us, plain.tpot_us) == (None, None)
    assert b"ttft_us" not in plain.body


def test_a_tampered_timing_fails_the_mac() -> None:
    enclave = Enclave()
    payload = _timed(enclave, ttft_us=120_500, tpot_us=9_800)
    forged = payload.replace(b'"ttft_us":120500', b'"ttft_us":100500')
    assert forged != payload
    receipt, tags = parse_receipt(forged)  # a well-formed receipt claiming a faster start...
    assert receipt.ttft_us == 100_500
    refused("receipt.mac", lambda: check_tag(receipt, tags, GATEWAY_TAG, enclave.receipt_key))


@pytest.mark.parametrize(
    ("field", "value"),
    [("ttft_us", -1), ("ttft_us", 1.5), ("ttft_us", True), ("tpot_us", "9"),
     ("tpot_us", 86_400 * 10**6 + 1), ("ttft_ms", 3)],
)  # fmt: skip
def test_a_bad_timing_field_is_named(field: str, value: Any) -> None:
    enclave = Enclave()
    doc = {"v": 2, **enclave.fields(session_id=enclave.session_id.hex(), index=0), field: value}
    with pytest.raises(ReceiptInvalid) as caught:
        parse_receipt(_payload(canonical(doc)))
    assert caught.value.check == "receipt.format"
    assert str(caught.value.detail).startswith(f"{field}: ")
