"""Fuzzing wire v2 receipts: RECEIPT and ROOT payloads, receipt bodies, proof bundles, the
gateway's root tracker and Merkle inclusion proofs.

Property: any input ends in a result or ReceiptInvalid naming a check (merkle: a plain
False), never another exception; and a mutated receipt, root or bundle passes its MAC,
signature or proof only if what was tagged or signed is unchanged."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teeroute.sealing import merkle
from teeroute.sealing.errors import ReceiptInvalid
from teeroute.sealing.receipt_body import ReceiptV2, parse_body
from teeroute.sealing.receipt_mac import GATEWAY_TAG, check_tag, parse_receipt
from teeroute.sealing.roots import SignedRoot, parse_root, verify_bundle
from teeroute.sealing.tracker import RootTracker

from . import budget
from . import sealing_inputs as s
from .json_values import VALUES, changed, deep
from .mutate import inputs, mutated, typed

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(budget.TIMEOUT_S)]

ORIGINAL_RECEIPT, ORIGINAL_TAGS = parse_receipt(s.RECEIPTS[1])
ORIGINAL_ROOT = parse_root(s.ROOT)


@budget.budget()
@given(inputs(s.RECEIPTS[1]))
def test_a_mutated_receipt_is_refused_or_carries_the_same_tagged_body(payload: bytes) -> None:
    parsed = typed(lambda: parse_receipt(payload), ReceiptInvalid)
    if not isinstance(parsed, tuple):
        return
    receipt, tags = parsed
    if typed(lambda: check_tag(receipt, tags, GATEWAY_TAG, s.RECEIPT_KEY), ReceiptInvalid) is None:
        assert receipt.body == ORIGINAL_RECEIPT.body
        assert tags[GATEWAY_TAG] == ORIGINAL_TAGS[GATEWAY_TAG]


_BODY_DOC = json.loads(ORIGINAL_RECEIPT.body)


@budget.budget(budget.SHAPES)
@given(st.one_of(deep(), changed(_BODY_DOC), VALUES))
def test_a_receipt_body_of_any_shape_raises_only_receipt_invalid(raw: Any) -> None:
    body = raw if isinstance(raw, bytes) else json.dumps(raw, separators=(",", ":")).encode()
    typed(lambda: parse_body(body), ReceiptInvalid)


def _root_payload(doc: bytes) -> bytes:
    return len(doc).to_bytes(2, "big") + doc + bytes(64)


@budget.budget()
@given(st.one_of(inputs(s.ROOT), deep(1020).map(lambda d: _root_payload(d[:1024]))))
def test_a_mutated_root_is_refused_or_signed_over_the_same_document(payload: bytes) -> None:
    root = typed(lambda: parse_root(payload), ReceiptInvalid)
    if not isinstance(root, SignedRoot):
        return
    if typed(lambda: root.verify(s.SIGNING_SHA256), ReceiptInvalid) is None:
        assert (root.doc, root.signature) == (ORIGINAL_ROOT.doc, ORIGINAL_ROOT.signature)


@budget.budget()
@given(inputs(s.ROOT))
def test_the_tracker_proves_receipts_only_from_the_root_the_enclave_signed(payload: bytes) -> None:
    tracker = RootTracker(session_id=s.PARAMS.session_id, hpke_key_sha256=s.HPKE_SHA256)
    for raw in s.RECEIPTS:
        receipt = parse_receipt(raw)[0]
        tracker.note(receipt, receipt.request_id, s.NOW)
    proofs = typed(lambda: tracker.on_root(payload, s.SIGNING_SHA256), ReceiptInvalid)
    if isinstance(proofs, list) and proofs:
        root = parse_root(payload)
        assert (root.doc, root.signature, root.leaves) == (
            ORIGINAL_ROOT.doc,
            ORIGINAL_ROOT.signature,
            ORIGINAL_ROOT.leaves,
        )


_BUNDLE_DOC = json.loads(s.BUNDLE)


@budget.budget()
@given(
    st.one_of(inputs(s.BUNDLE), deep(), changed(_BUNDLE_DOC).map(lambda d: json.dumps(d).encode()))
)
def test_a_mutated_proof_bundle_proves_only_the_original_receipt(bundle: bytes) -> None:
    for attested in (s.SIGNING_SHA256, None):
        receipt = typed(partial(verify_bundle, bundle, attested), ReceiptInvalid)
        if isinstance(receipt, ReceiptV2):
            assert receipt.body == ORIGINAL_RECEIPT.body


@budget.budget(budget.SHAPES)
@given(changed(_BUNDLE_DOC, VALUES))
def test_a_bundle_given_as_a_mapping_of_any_shape_raises_only_receipt_invalid(doc: Any) -> None:
    typed(lambda: verify_bundle(doc, s.SIGNING_SHA256), ReceiptInvalid)


_PATH = merkle.inclusion_proof(ORIGINAL_ROOT.leaves, ORIGINAL_RECEIPT.index)
_HASHES = st.binary(min_size=0, max_size=40)


@budget.budget()
@given(
    _HASHES,
    st.integers(-(2**64), 2**64),
    st.integers(-(2**64), 2**64),
    st.lists(_HASHES, max_size=70),
    _HASHES,
)
def test_merkle_verification_of_anything_is_a_plain_bool(
    leaf: bytes, index: int, size: int, path: list[bytes], root: bytes
) -> None:
    assert merkle.verify_inclusion(leaf, index, size, path, root) in (True, False)


@budget.budget()
@given(mutated(b"".join(_PATH)), st.integers(0, len(ORIGINAL_ROOT.leaves) - 1))
def test_a_mutated_audit_path_proves_nothing(raw: bytes, index: int) -> None:
    """The size is the signed root's (a bundle's must equal it): the same path may prove
    leaf 1 of 3 and leaf 1 of 4 under one root, which is why the size is signed."""
    path = [raw[at : at + merkle.HASH_LEN] for at in range(0, len(raw), merkle.HASH_LEN)]
    size = len(ORIGINAL_ROOT.leaves)
    if merkle.verify_inclusion(ORIGINAL_RECEIPT.leaf, index, size, path, ORIGINAL_ROOT.root):
        assert (path, index) == (_PATH, ORIGINAL_RECEIPT.index)
