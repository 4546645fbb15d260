"""JSON nested past the interpreter's recursion limit, from a peer, is refused as the
parser's typed error (or read as "not JSON"), never a RecursionError: fuzzing (tests/fuzz)
found it in the SDK's sealing parsers; these are the same one-token fixes at the other sites
that read peer JSON with the standard library."""

from __future__ import annotations

import pytest

from teeroute import admission
from teeroute.client import answer, errors, proxy
from teeroute.client import session as client_session
from teeroute.client.errors import InvalidRequest
from teeroute_enclave import sealed
from teeroute_enclave.refusals import SealedRejected

DEEP = b"[" * 200_000 + b"]" * 200_000


def test_agent_refuses_a_deep_sealed_body_as_a_typed_error() -> None:
    with pytest.raises(SealedRejected) as refused:
        sealed._json_object(DEEP)
    assert refused.value.status == 400


def test_agent_refuses_deep_meta_as_a_typed_error() -> None:
    with pytest.raises(SealedRejected):
        sealed._json(DEEP, "meta")


def test_client_reads_a_deep_error_body_as_no_error_object() -> None:
    assert errors._error_object(DEEP) == {}


def test_client_reads_a_deep_error_frame_as_plain_text() -> None:
    assert answer._error_text(DEEP) == "an ERROR frame in the answer"


def test_proxy_does_not_take_a_deep_event_for_usage() -> None:
    assert proxy._usage_only(b'data: {"usage": 1, "choices": ' + DEEP + b"}\n\n") is False


def test_client_refuses_a_deep_request_body() -> None:
    with pytest.raises(InvalidRequest):
        client_session.request_meta("/v1/chat/completions", DEEP)


def test_expiry_annotation_nested_deep_reads_as_empty() -> None:
    slice_ = {"metadata": {"annotations": {admission.EXPIRY: DEEP.decode()}}}
    assert admission._expiry_map(slice_) == {}
