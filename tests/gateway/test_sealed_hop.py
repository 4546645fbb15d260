"""The gateway's sealed-mode decisions, as pure functions: how a request reaches an endpoint,
which published keys are believed, and when a receipt's counts are implausible."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from teeroute.sealing import hpke
from teeroute.sealing.envelope import open_request, seal_request
from teeroute.sealing.receipts import Receipt, sign_receipt
from teeroute_gateway.catalog import UNATTESTED, Endpoint
from teeroute_gateway.sealed import Hop, Observed, hop_mode, implausible, judge, public_key
from teeroute_gateway.upstream import UpstreamError

KEY = bytes(range(32))
SHA = hashlib.sha256(KEY).hexdigest()
ATTESTED = Endpoint("ns/p/e", "ns/p", "http://x", "simulated", hpke_public=KEY)
KEYLESS = Endpoint("ns/p/k", "ns/p", "http://x", "simulated")
BARE = Endpoint("ns/p/b", "ns/p", "http://x", UNATTESTED)


@pytest.mark.parametrize(
    ("sealing", "by_client", "endpoint", "mode"),
    [
        ("gateway", False, ATTESTED, "gateway"),
        ("gateway", False, KEYLESS, None),  # never a plain prompt to an enclave we can't seal to
        ("gateway", False, BARE, "plain"),  # unattested (allowed by config): nothing to seal to
        ("required", False, ATTESTED, None),
        ("required", True, ATTESTED, "client"),
        ("off", False, ATTESTED, "plain"),
        ("off", True, ATTESTED, "client"),
        ("gateway", True, KEYLESS, None),
        ("gateway", True, BARE, None),
    ],
)
def test_hop_mode(sealing: str, by_client: bool, endpoint: Endpoint, mode: str | None) -> None:
    assert hop_mode(sealing, by_client, endpoint) == mode


def test_a_published_key_is_believed_only_if_it_is_the_attested_one() -> None:
    encoded = base64.b64encode(KEY).decode()
    assert public_key(encoded, SHA) == KEY
    assert public_key(encoded, "00" * 32) is None
    assert public_key("", SHA) is None
    assert public_key(encoded, "") is None
    assert public_key("not base64!", SHA) is None
    short = base64.b64encode(KEY[:31]).decode()
    assert public_key(short, hashlib.sha256(KEY[:31]).hexdigest()) is None


def _receipt(input_tokens: int, output_tokens: int) -> Receipt:
    return Receipt(
        request_id="r",
        model="m",
        served_model="m",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        usage_source="engine",
        status=200,
        complete=True,
        hpke_key_sha256=SHA,
        signing_key_sha256=SHA,
        request_sha256="",
        response_sha256="",
        issued_at="",
        signing_key="",
    )


@pytest.mark.parametrize(
    ("observed", "counts", "problem"),
    [
        (Observed(400, 3000), (100, 40), ""),
        (Observed(400, 3000), (400 + 1024 + 1, 40), "receipt.input_tokens"),
        (Observed(400, 30), (100, 47), "receipt.output_tokens"),
        (Observed(400, 3000, 12, 40), (12, 40), ""),
        (Observed(400, 3000, 12, 40), (13, 40), "receipt.input_tokens"),
        (Observed(400, 3000, 12, 40), (12, 39), "receipt.output_tokens"),
    ],
)
def test_implausible_counts(observed: Observed, counts: tuple[int, int], problem: str) -> None:
    assert implausible(_receipt(*counts), observed) == problem


def _sealed_exchange() -> tuple[Hop, Endpoint, bytes, ed25519.Ed25519PrivateKey]:
    private, public = hpke.generate_key_pair()
    signing = ed25519.Ed25519PrivateKey.generate()
    signing_public = signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    endpoint = dataclasses.replace(
        ATTESTED,
        hpke_public=public,
        hpke_key_sha256=hashlib.sha256(public).hexdigest(),
        signing_key_sha256=hashlib.sha256(signing_public).hexdigest(),
    )
    sealed, opener = seal_request(public, {"path": "/v1/completions"}, b"{}")
    _, sealer = open_request(sealed, private, public)
    hop = Hop("gateway", sealed, opener, request_bytes=2)
    stream = sealer.frame(b'{"usage":1}') + sealer.frame(b"", final=True)
    receipt = sign_receipt(
        sign=signing.sign,
        signing_public=signing_public,
        hpke_public=public,
        request_id="gen-1",
        model="m",
        served_model="m",
        input_tokens=1,
        output_tokens=2,
        usage_source="engine",
        status=200,
        complete=True,
        request_sha256=sealed.digest,
        response_sha256=sealer.digest.hexdigest(),
        now=dt.datetime.now(dt.UTC),
    )
    return (
        hop,
        endpoint,
        stream + b"event: receipt\ndata: " + receipt.text().encode() + b"\n\n",
        signing,
    )


def test_a_whole_sealed_answer_opens_and_its_receipt_is_judged_valid() -> None:
    hop, endpoint, stream, _ = _sealed_exchange()
    assert hop.open_all(stream) == b'{"usage":1}'
    verdict = judge(hop, endpoint, "gen-1", Observed(2, hop.frame_bytes))
    assert verdict.status == "valid" and verdict.receipt is not None
    assert judge(hop, endpoint, "gen-2", Observed(2, hop.frame_bytes)).check == "receipt.request_id"


def test_a_cut_short_sealed_answer_is_an_upstream_failure() -> None:
    hop, _, stream, _ = _sealed_exchange()
    cut = stream[: stream.index(b"event: sealed", 10)]
    with pytest.raises(UpstreamError) as failed:
        hop.open_all(cut)
    assert failed.value.kind == "sealed"


def test_no_receipt_is_missing_and_garbage_is_not_stored() -> None:
    hop, endpoint, stream, _ = _sealed_exchange()
    hop.open_all(stream[: stream.index(b"event: receipt")])
    assert judge(hop, endpoint, "gen-1", Observed(2, 100)).status == "missing"
    hop.receipt = b"\x00\xff not json"
    verdict = judge(hop, endpoint, "gen-1", Observed(2, 100))
    assert (verdict.status, verdict.text, verdict.check) == ("invalid", None, "receipt.format")


def test_a_plain_hop_expects_no_receipt() -> None:
    assert judge(Hop("plain"), ATTESTED, "r", Observed(0, 0)).status == ""
