"""The gateway's sealed-mode decisions and its reading of sealed answers (wire v2), against the
protocol's own functions (an in-process enclave end, `enclave_end.py`): how a request reaches
an endpoint, which published keys are believed, how answers open (or fail to), what a client
hop relays, and when a receipt is valid, invalid, missing or implausible."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from teeroute.sealing import frames
from teeroute.sealing.receipt_body import parse_body, receipt_body
from teeroute.sealing.receipt_mac import ReceiptV2
from teeroute_gateway import hop_v2
from teeroute_gateway.catalog import UNATTESTED, Endpoint
from teeroute_gateway.sealed import Hop, Observed, hop_mode, implausible, judge, public_key
from teeroute_gateway.sessions import Pooled, Proofs, SessionPool
from teeroute_gateway.upstream import UpstreamError

from .enclave_end import REQUEST_ID, Enclave, enclave

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


def _receipt(input_tokens: int, output_tokens: int) -> ReceiptV2:
    fields = {
        "session_id": "00" * 16, "index": 0, "request_id": "r", "model": "m",
        "served_model": "m", "input_tokens": input_tokens, "output_tokens": output_tokens,
        "usage_source": "engine", "status": 200, "complete": True, "request_sha256": SHA,
        "response_sha256": SHA, "hpke_key_sha256": SHA, "signing_key_sha256": SHA,
        "issued_at": "2026-12-05T00:00:00Z",
    }  # fmt: skip
    return parse_body(receipt_body(fields))


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


def _session(end: Enclave, proofs: Proofs | None = None) -> Pooled:
    pool = SessionPool(end.handshake, "gateway:" + "00" * 32, None)
    if proofs is not None:
        pool.sink = proofs.extend
    return asyncio.run(pool.get(end.endpoint))


def _sealed(end: Enclave, pooled: Pooled, pieces: list[bytes]) -> tuple[Hop, bytes]:
    hop, request = hop_v2.sealed_plain(
        pooled, "/v1/completions", "m", False, 16, b'{"prompt":"x"}', REQUEST_ID
    )
    return hop, end.answer(request, pieces)


def test_a_whole_sealed_answer_opens_and_its_receipt_is_judged_valid() -> None:
    end = enclave()
    hop, answer = _sealed(end, _session(end), [b'{"usage":', b"1}"])
    assert hop.open_all(answer) == b'{"usage":1}'
    verdict = judge(hop, end.endpoint, REQUEST_ID, Observed(2, hop.frame_bytes))
    assert verdict.status == "valid" and verdict.receipt is not None
    assert verdict.text is not None and verdict.text.startswith('{"complete":true')
    other = judge(hop, end.endpoint, "gen-2", Observed(2, hop.frame_bytes))
    assert (other.status, other.check) == ("invalid", "receipt.request_id")


@pytest.mark.parametrize(
    ("cut", "why"),
    [(-1, "cut short"), (-200, "cut short")],
    ids=["mid-frame", "before the final chunk"],
)
def test_a_cut_short_sealed_answer_is_an_upstream_failure(cut: int, why: str) -> None:
    end = enclave()
    hop, answer = _sealed(end, _session(end), [b"x" * 300])
    chunks = answer[: answer.index(b"TR\x02\x20")]  # without the receipt
    with pytest.raises(UpstreamError) as failed:
        hop.open_all(chunks[:cut])
    assert failed.value.kind == "sealed" and why in str(failed.value)


def test_a_flipped_bit_fails_the_answer_naming_the_check() -> None:
    end = enclave()
    hop, answer = _sealed(end, _session(end), [b"hello"])
    tampered = bytearray(answer)
    tampered[frames.HEADER_LEN + 40] ^= 1  # inside the first chunk's ciphertext
    with pytest.raises(UpstreamError) as failed:
        hop.open_all(bytes(tampered))
    assert "session.open" in str(failed.value)


def test_a_receipt_tagged_with_another_sessions_key_is_invalid() -> None:
    """A receipt moved over from another session (or made up) fails its MAC check."""
    end = enclave()
    pooled, other = _session(end), _session(end)
    hop, request = hop_v2.sealed_plain(pooled, "/v1/completions", "m", False, 16, b"{}", "r")
    answer = end.answer(request, [b"{}"], request_id="r", tag_with=other.session.id)
    hop.open_all(answer)
    verdict = judge(hop, end.endpoint, "r", Observed(2, 100))
    assert (verdict.status, verdict.check) == ("invalid", "receipt.mac")


def test_no_receipt_is_missing_and_garbage_is_not_stored() -> None:
    end = enclave()
    hop, answer = _sealed(end, _session(end), [b"{}"])
    hop.open_all(answer[: answer.index(b"TR\x02\x20")])
    assert judge(hop, end.endpoint, REQUEST_ID, Observed(2, 100)).status == "missing"
    hop.open(frames.encode(frames.FrameType.RECEIPT, b"\x00\xff not a receipt"))
    verdict = judge(hop, end.endpoint, REQUEST_ID, Observed(2, 100))
    assert (verdict.status, verdict.text, verdict.check) == ("invalid", None, "receipt.frame")


def _client_hop(pieces: list[bytes]) -> tuple[Hop, bytes, Enclave, Proofs]:
    """A client hop (counted and hashed, never opened) and its answer, the second receipt
    of a batch of 2, so that a ROOT frame follows its receipt."""
    end = enclave()
    proofs: Proofs = []
    pooled = _session(end, proofs)
    first, answer = _sealed(end, pooled, [b"{}"])  # the batch's first receipt
    first.open_all(answer)
    hop, request = hop_v2.sealed_plain(pooled, "/v1/completions", "m", False, 16, b"{}", "r")
    hop.mode = "client"
    return hop, end.answer(request, pieces, request_id="r"), end, proofs


def _final_chunk_at(answer: bytes) -> int:
    """Where the last CHUNK frame (the final one) begins."""
    at, last = 0, -1
    while at < len(answer):
        kind, length = answer[at + 3], int.from_bytes(answer[at + 4 : at + 8], "big")
        if kind == frames.FrameType.CHUNK:
            last = at
        at += frames.HEADER_LEN + length
    return last


@pytest.mark.parametrize("size", [1, 7, 1 << 20])
def test_a_client_hop_relays_up_to_the_receipt_and_proves_it_with_the_root(size: int) -> None:
    """Read in pieces of any size: the client gets exactly the chunks and the receipt, each
    chunk once its frame is whole, the final chunk and the receipt only when released (after
    the usage is recorded); the ROOT frame (the gateway session's) stays with the gateway,
    whose proofs it completes."""
    hop, answer, end, proofs = _client_hop([b"sealed ", b"for the ", b"client"])
    root_at = answer.index(b"TR\x02\x21")  # the batch of 2 is due: a ROOT after the receipt
    relayed = b"".join(hop.inspect(answer[n : n + size]) for n in range(0, len(answer), size))
    assert relayed == answer[: _final_chunk_at(answer)]
    assert hop.whole and relayed + hop.release() == answer[:root_at]
    assert hop.release() == b""  # once
    assert (hop.broken, hop.frames, hop.roots) == ("", 4, 1)
    assert judge(hop, end.endpoint, "r", Observed(2, 100)).status == "valid"
    assert [rid for rid, _ in proofs] == [REQUEST_ID, "r"]


def test_a_client_answer_cut_before_its_receipt_is_not_whole() -> None:
    hop, answer, _, _ = _client_hop([b"sealed", b"!"])
    cut = answer[: answer.index(b"TR\x02\x20")]  # up to the receipt
    relayed = hop.inspect(cut)
    assert relayed == cut[: _final_chunk_at(answer)]
    assert not hop.whole and relayed + hop.release() == cut


def test_a_client_answer_broken_after_its_final_chunk_is_passed_on_as_it_came() -> None:
    """A chunk after the final one where the receipt should be: nothing is held back from
    the client (it is not a whole answer, and the client's reader refuses it), in order."""
    hop, answer, end, _ = _client_hop([b"sealed", b"!"])
    cut = answer[: answer.index(b"TR\x02\x20")]
    garbage = frames.encode(frames.FrameType.CHUNK, b"\x00" * 60)
    relayed = hop.inspect(cut) + hop.inspect(garbage) + hop.inspect(b"more")
    assert relayed == cut + garbage + b"more" and hop.release() == b""
    assert not hop.whole and hop.broken == "chunk.final"
    assert judge(hop, end.endpoint, "r", Observed(2, 100)).status == "missing"


def test_a_plain_hop_expects_no_receipt() -> None:
    assert judge(Hop("plain"), ATTESTED, "r", Observed(0, 0)).status == ""
