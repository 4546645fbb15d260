"""Counting, costing and relaying: the pure parts of metering and SSE pass-through."""

from __future__ import annotations

import orjson
import pytest

from teeroute_gateway.billing import Counted, Counts, Held, bill
from teeroute_gateway.errors import GatewayError
from teeroute_gateway.health import BreakerPolicy, HealthBook
from teeroute_gateway.metering import CLAIM_CAP, Usage, cost_nano
from teeroute_gateway.requests import CHAT, COMPLETION, parse_request, upstream_body
from teeroute_gateway.sealed import NO_RECEIPT
from teeroute_gateway.streaming import StreamRelay, unreadable
from teeroute_gateway.upstream import UpstreamError
from tests.gateway.builders import catalog, pool, route

POOL = catalog([pool("p", "1", "2")], route(["p"])).pools["ns/p"]


def _plain_bill(reported: Counts, counted: Counted) -> Usage:
    return bill("plain", reported, counted, NO_RECEIPT, Held(10**12, 10**6, POOL)).usage


def chunk(content: str | None, usage: dict[str, int] | None = None) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "usage": usage}
    body["choices"] = [] if content is None else [{"index": 0, "delta": {"content": content}}]
    return b"data: " + orjson.dumps(body) + b"\n\n"


STREAM = (
    chunk("")
    + chunk("Hel")
    + chunk("lo")
    + chunk(None, {"prompt_tokens": 5, "completion_tokens": 2})
    + b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("size", [1, 3, 7, 64, len(STREAM)])
def test_relay_forwards_content_and_ends_with_its_own_usage_chunk(size: int) -> None:
    relay = StreamRelay(CHAT)
    out = b"".join(relay.feed(STREAM[i : i + size]) for i in range(0, len(STREAM), size))
    assert out == chunk("") + chunk("Hel") + chunk("lo")  # usage and [DONE] held back
    assert relay.counted == 2
    usage = _plain_bill(Counts(5, 2), Counted(99, relay.counted))
    closing = relay.closing(usage, cost_nano=1500, request_id="gen-1", model="m")
    events = [e for e in closing.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    final = orjson.loads(events[0].removeprefix(b"data: "))
    assert final["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "total_tokens": 7,
        "cost": 1.5e-6,
    }
    assert final["choices"] == [{"index": 0, "delta": {}, "finish_reason": None}]


@pytest.mark.parametrize(
    "events",
    [
        b": keep-alive\n\n",
        b'event: message\nid: 7\nretry: 100\ndata: {"a": 1}\n\n',
        b"data:{}\r\n\n",
        b"data: {\ndata: }\n\n",  # one object over two data lines
        b"\ndata: [DONE]\n\n",
        b"data: {}\n\n\n\ndata: {}\n\n",  # an empty line between events
    ],
)
def test_every_kind_of_readable_event_passes(events: bytes) -> None:
    assert unreadable(chunk("a") + events) is None


@pytest.mark.parametrize(
    ("garbage", "problem"),
    [
        (b"<html>oops</html>\n\n", "a line that is not a server-sent event field"),
        (b"Traceback (most recent call last):\n\n", "a line that is not a server-sent event field"),
        (b'data: {"choices": [\n\n', "an event whose data is not a JSON object"),
        (b"data: hello\n\n", "an event whose data is not a JSON object"),
        (b"data: [1, 2]\n\n", "an event whose data is not a JSON object"),
        (b'data: {"a":\n<b>oops</b>}\n\n', "a line that is not a server-sent event field"),
    ],
)
def test_garbage_mid_stream_cuts_the_stream_and_is_not_relayed(
    garbage: bytes, problem: str
) -> None:
    """The tokens before it went out and are counted; the run holding the garbage does not
    go out (not even its good events), nor is it counted; the message names no byte of it."""
    relay = StreamRelay(CHAT)
    assert relay.feed(chunk("a") + chunk("b")) == chunk("a") + chunk("b")
    with pytest.raises(UpstreamError) as cut:
        relay.feed(chunk("c") + garbage + chunk("d"))
    assert cut.value.kind == "protocol" and not cut.value.before_response
    assert str(cut.value).endswith(problem) and b"oops" not in str(cut.value).encode()
    assert relay.counted == 2


def test_relay_without_upstream_usage_bills_its_own_count() -> None:
    relay = StreamRelay(CHAT)
    relay.feed(chunk("a") + chunk("b") + chunk("c") + b"data: [DONE]\n\n")
    usage = _plain_bill(Counts(), Counted(40, relay.counted))
    assert (
        usage.output_tokens,
        usage.output_reported,
        usage.input_tokens,
        usage.input_reported,
    ) == (3, False, 40, False)


def test_a_miner_claiming_far_more_than_it_sent_is_capped() -> None:
    usage = _plain_bill(Counts(5, 1000), Counted(5, 10))
    assert (usage.output_tokens, usage.output_reported) == (CLAIM_CAP * 10, False)


@pytest.mark.parametrize(
    ("price_in", "price_out", "tokens_in", "tokens_out", "nano"),
    [
        ("1", "2", 1_000_000, 0, 1_000_000_000),
        ("0.15", "0.6", 7, 3, 2850),
        ("0.000000001", "0", 1, 0, 1),
    ],
)
def test_cost_is_exact_and_rounds_up(
    price_in: str, price_out: str, tokens_in: int, tokens_out: int, nano: int
) -> None:
    cat = catalog([pool("p", price_in, price_out)], route(["p"]))
    assert cost_nano(cat.pools["ns/p"], tokens_in, tokens_out) == nano


@pytest.mark.parametrize(
    ("raw", "kind", "param"),
    [
        (b"{not json", CHAT, None),
        (b"[1, 2]", CHAT, None),
        (b'{"model": "m"}', CHAT, "messages"),
        (b'{"model": "m", "messages": []}', CHAT, "messages"),
        (b'{"model": "m", "messages": ["hi"]}', CHAT, "messages[0]"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', CHAT, "model"),
        (b'{"model": 3, "messages": [{"role": "user"}]}', CHAT, "model"),
        (b'{"model": "m", "messages": [{"role": "user"}], "max_tokens": 0}', CHAT, "max_tokens"),
        (b'{"model": "m", "messages": [{"role": "user"}], "stream": "yes"}', CHAT, "stream"),
        (b'{"model": "m", "messages": [{"role": "user"}], "models": "m2"}', CHAT, "models"),
        (b'{"model": "m"}', COMPLETION, "prompt"),
    ],
)
def test_bad_requests_are_400_with_the_field(raw: bytes, kind: str, param: str | None) -> None:
    with pytest.raises(GatewayError) as raised:
        parse_request(raw, kind, None)
    assert (raised.value.status, raised.value.param) == (400, param)


def test_upstream_body_asks_for_usage_bounds_output_and_drops_routing_fields() -> None:
    raw = orjson.dumps(
        {
            "model": "public",
            "models": ["x"],
            "provider": {"sort": "price"},
            "session_id": "s",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "temperature": 0.2,
        }
    )
    request = parse_request(raw, CHAT, None)
    sent = orjson.loads(upstream_body(request, "engine-name", 128))
    assert sent == {
        "model": "engine-name",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "temperature": 0.2,
        "max_tokens": 128,
        "stream_options": {"include_usage": True},
    }


def test_breaker_ejects_after_consecutive_failures_and_a_failed_probe_doubles_the_cool_down() -> (
    None
):
    book = HealthBook(BreakerPolicy(consecutive_failures=3, base_ejection_s=5, max_ejection_s=60))
    entry = book.entry("e", "p")
    assert [book.finished(entry, ok=False, now=t) for t in (0, 1, 2)] == [False, False, True]
    assert entry.ejected(3) and not entry.ejected(7.5)
    assert book.finished(entry, ok=False, now=8)  # the probe after the cool-down failed
    assert entry.ejected_until == 18  # 10 s this time
    book.finished(entry, ok=True, now=20)
    assert not book.finished(entry, ok=False, now=21)  # healthy again: one failure is not enough


def test_breaker_ejects_on_failure_ratio_over_the_window() -> None:
    book = HealthBook(BreakerPolicy(consecutive_failures=100, min_requests=10, failure_ratio=0.5))
    entry = book.entry("e", "p")
    outcomes = [True, False] * 5 + [False]
    ejected = [book.finished(entry, ok=ok, now=float(i)) for i, ok in enumerate(outcomes)]
    assert ejected[-1] and not any(ejected[:-1])


@pytest.mark.parametrize(
    ("kind", "extra", "per_choice", "choices"),
    [
        (CHAT, {"max_tokens": 100, "max_completion_tokens": 5}, 5, 1),  # the smaller one
        (CHAT, {"max_tokens": 7, "max_completion_tokens": 50}, 7, 1),
        (CHAT, {"n": 3}, None, 3),
        (COMPLETION, {"n": 2, "best_of": 4}, None, 4),
        (COMPLETION, {"prompt": ["a", "b", "c"], "n": 2}, None, 6),
        (COMPLETION, {"prompt": [[1, 2], [3]]}, None, 2),  # a batch of token-id prompts
        (COMPLETION, {"prompt": [1, 2, 3]}, None, 1),  # one prompt of token ids
    ],
)
def test_the_output_bound_counts_every_completion_and_the_smaller_limit(
    kind: str, extra: dict[str, object], per_choice: int | None, choices: int
) -> None:
    body = {"model": "m", "messages": [{"role": "user"}]} if kind == CHAT else {"model": "m"}
    body = {"prompt": "p", **body, **extra} if kind == COMPLETION else {**body, **extra}
    request = parse_request(orjson.dumps(body), kind, None)
    assert (request.max_tokens, request.choices) == (per_choice, choices)


def test_every_limit_field_the_miner_gets_says_the_limit_held_for() -> None:
    raw = orjson.dumps({"model": "m", "prompt": "p", "max_tokens": 200, "max_completion_tokens": 5})
    sent = orjson.loads(upstream_body(parse_request(raw, COMPLETION, None), "e", 5))
    assert (sent["max_tokens"], sent["max_completion_tokens"]) == (5, 5)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 0}, "n"),
        ({"best_of": "2"}, "best_of"),
        ({"n": 200}, "n"),
        ({"max_tokens": -1}, "max_tokens"),
    ],
)
def test_bad_completion_counts_are_400_with_the_field(extra: dict[str, object], param: str) -> None:
    with pytest.raises(GatewayError) as raised:
        parse_request(orjson.dumps({"model": "m", "prompt": "p", **extra}), COMPLETION, None)
    assert (raised.value.status, raised.value.param) == (400, param)
