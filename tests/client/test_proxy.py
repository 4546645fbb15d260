"""`teeroute proxy` over real HTTP with the official openai SDK, in front of enclaves with
real keys (the gateway hop in-process): streams relayed as frames open, the usage-only chunk
dropped unless asked for, OpenAI-shaped errors for refusals and broken answers, verbose lines
without content."""

from __future__ import annotations

import io
import json
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from teeroute import cli
from teeroute.client.cli import is_loopback
from teeroute.client.policy import ClientPolicy
from teeroute.client.proxy import EventRelay, ProxyServer
from teeroute.client.session import SealedClient

from .fakes import MODEL, Chip, FakeEnclave, FakeGateway, make_chip, simulated_policy

MESSAGES: Any = [{"role": "user", "content": "a secret prompt"}]
ANSWER = "Sealed hello from the enclave"


@pytest.fixture(scope="module")
def chip() -> Chip:
    return make_chip()


class Running:
    def __init__(
        self,
        gateway: FakeGateway,
        policy: ClientPolicy,
        api_key: str | None,
        one_shot: bool = False,
    ) -> None:
        http = httpx.Client(transport=gateway.transport())
        client = SealedClient(
            "http://gw", api_key, policy, http=http, rng=random.Random(1), one_shot=one_shot
        )
        self.log = io.StringIO()
        self.server = ProxyServer(("127.0.0.1", 0), client, api_key, verbose=True, log=self.log)
        self.gateway = gateway
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def sdk(self, key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture
def running(chip: Chip, tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def start(
        gateway: FakeGateway | None = None,
        policy: ClientPolicy | None = None,
        api_key: str | None = "sk-test",
        one_shot: bool = False,
    ) -> Running:
        proxy = Running(
            gateway or FakeGateway([FakeEnclave(chip)]),
            policy or simulated_policy(chip, tmp_path),
            api_key,
            one_shot,
        )
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.server.shutdown()
        proxy.server.server_close()


def test_a_chat_completion_through_the_proxy(running: Any) -> None:
    proxy = running()
    raw = proxy.sdk().chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.parse().choices[0].message.content == ANSWER
    assert raw.headers["x-request-id"] == "req-1"
    assert raw.headers["x-teeroute-enclave"] == "ns/pool-a/e0"
    assert raw.headers["x-teeroute-hpke-key"] == proxy.gateway.enclaves[0].key_id
    line = proxy.log.getvalue()
    assert "req-1 pool=ns/pool-a tee=simulated measurement=abababababababab" in line
    session = next(iter(proxy.gateway.enclaves[0].sessions)).hex()[:16]
    assert f"session={session} tokens=7+5 receipt ok" in line
    assert "secret" not in line and "Sealed" not in line


def test_a_stream_through_the_proxy(running: Any) -> None:
    proxy = running()
    chunks = list(proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER
    assert all(c.choices for c in chunks)  # the usage-only chunk was not asked for
    assert "receipt ok" in proxy.log.getvalue()


def test_the_usage_chunk_is_kept_when_asked_for(running: Any) -> None:
    proxy = running()
    chunks = list(
        proxy.sdk().chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_the_key_may_come_from_the_local_client(running: Any) -> None:
    proxy = running(api_key=None)
    answer = proxy.sdk("sk-test").chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == ANSWER
    with pytest.raises(openai.AuthenticationError) as raised:
        proxy.sdk("sk-wrong").chat.completions.create(model=MODEL, messages=MESSAGES)
    assert raised.value.code == "invalid_api_key"  # the gateway's own error, passed through


def test_no_key_at_all_is_a_401(running: Any) -> None:
    proxy = running(api_key=None)
    answer = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": MODEL})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "missing_api_key"


def test_refused_attestation_is_a_403_and_nothing_is_sent(
    running: Any, chip: Chip, tmp_path: Path
) -> None:
    pinned = simulated_policy(chip, tmp_path, allowedMeasurements=["cd" * 48])
    proxy = running(policy=pinned)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert raised.value.code == "attestation_refused"
    assert "ns/pool-a/e0 (simulated): policy.measurement" in raised.value.message
    assert proxy.gateway.inference == []


def test_a_simulated_miner_is_refused_without_a_policy(running: Any) -> None:
    proxy = running(policy=ClientPolicy())
    with pytest.raises(openai.PermissionDeniedError, match=r"policy\.tee_allowed"):
        proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert proxy.gateway.inference == []


def test_a_broken_answer_is_a_502(running: Any, chip: Chip) -> None:
    proxy = running(FakeGateway([FakeEnclave(chip)], tamper=lambda p: p[:-1]))
    with pytest.raises(openai.InternalServerError) as raised:
        proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert raised.value.status_code == 502
    assert raised.value.code == "receipt.missing"
    assert "receipt FAILED (receipt.missing)" in proxy.log.getvalue()


def test_a_stream_broken_after_it_began_ends_with_an_error_event(running: Any, chip: Chip) -> None:
    proxy = running(FakeGateway([FakeEnclave(chip)], tamper=lambda p: p[:3]))
    stream = proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    seen = []
    with pytest.raises(openai.APIError, match=r"response\.truncated"):
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["Sealed", " hello", " from"]


def test_a_stream_without_a_receipt_fails_before_done(running: Any, chip: Chip) -> None:
    """Every token arrived and opened, but the receipt did not: an SDK that stops reading at
    [DONE] still gets the error, because [DONE] waits for the receipt."""
    proxy = running(FakeGateway([FakeEnclave(chip)], tamper=lambda p: p[:-1]))
    stream = proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    seen = []
    with pytest.raises(openai.APIError, match=r"receipt\.missing"):
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == ANSWER


def test_a_stream_whose_first_frame_fails_is_a_502(running: Any, chip: Chip) -> None:
    proxy = running(FakeGateway([FakeEnclave(chip)], tamper=lambda p: p[1:]))
    with pytest.raises(openai.InternalServerError) as raised:
        proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert raised.value.code == "chunk.order"  # the first chunk is missing


@pytest.mark.parametrize(
    ("one_shot", "kind", "hellos"), [(False, "REQUEST", 1), (True, "ONESHOT", 0)]
)
def test_the_proxy_in_both_modes(running: Any, one_shot: bool, kind: str, hellos: int) -> None:
    proxy = running(one_shot=one_shot)
    sdk = proxy.sdk()
    for _ in range(3):
        chunks = list(sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER
        answer = sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert answer.choices[0].message.content == ANSWER
    assert proxy.gateway.kinds == [kind] * 6
    assert len(proxy.gateway.hellos) == hellos
    assert proxy.log.getvalue().count("receipt ok") == 6
    sessions = {line.split("session=")[1].split()[0] for line in proxy.log.getvalue().splitlines()}
    assert len(sessions) == 1 and (sessions == {"one-shot"}) == one_shot


def test_a_stream_whose_receipt_is_not_tagged_for_us_fails_before_done(
    running: Any, chip: Chip
) -> None:
    def untagged(parts: list[bytes]) -> list[bytes]:
        return [*parts[:-1], parts[-1][:-1] + bytes([parts[-1][-1] ^ 1])]

    proxy = running(FakeGateway([FakeEnclave(chip)], tamper=untagged))
    stream = proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    seen = []
    with pytest.raises(openai.APIError, match=r"receipt\.mac"):
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == ANSWER
    assert "receipt FAILED (receipt.mac)" in proxy.log.getvalue()


def test_an_answer_in_clear_is_a_502(running: Any, chip: Chip) -> None:
    proxy = running(FakeGateway([FakeEnclave(chip)], clear_answer=True))
    with pytest.raises(openai.InternalServerError) as raised:
        proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert raised.value.code == "response.sealed"


def test_models_are_forwarded(running: Any) -> None:
    models = running().sdk().models.list()
    assert [m.id for m in models] == [MODEL]


def test_unknown_paths_and_bad_bodies(running: Any) -> None:
    proxy = running()
    assert httpx.post(f"{proxy.url}/v1/embeddings", json={}).status_code == 404
    bad = httpx.post(f"{proxy.url}/v1/chat/completions", content=b"{nope")
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "body"
    assert httpx.get(f"{proxy.url}/healthz").json() == {"status": "ok"}


def test_connections_are_kept_alive(running: Any) -> None:
    proxy = running()
    with httpx.Client() as client:
        for _ in range(3):
            body = {"model": MODEL, "messages": MESSAGES}
            answer = client.post(f"{proxy.url}/v1/chat/completions", json=body)
            assert answer.status_code == 200
        assert answer.http_version == "HTTP/1.1"


@pytest.mark.parametrize("keep_usage", [False, True])
def test_the_relay_keeps_event_boundaries_and_holds_done_back(keep_usage: bool) -> None:
    events = [
        b'data: {"choices": [{"delta": {"content": "a"}}], "usage": null}\n\n',
        b'data: {"choices": [], "usage": {"prompt_tokens": 1}}\n\n',
        b"data: [DONE]\n\n",
    ]
    raw = b"".join(events)
    relay = EventRelay(keep_usage)
    out = b"".join(relay.feed(raw[i : i + 7]) for i in range(0, len(raw), 7))
    assert out == (events[0] + events[1] if keep_usage else events[0])
    assert relay.flush() == events[2]


def test_the_one_shot_flag_is_a_proxy_option() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["proxy", "--gateway", "http://gw", "--one-shot"])
    assert args.one_shot is True
    assert parser.parse_args(["proxy", "--gateway", "http://gw"]).one_shot is False


def test_the_proxy_refuses_non_loopback_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("192.0.2.1") and not is_loopback("example.com")
    code = cli.main(["proxy", "--gateway", "http://127.0.0.1:9", "--host", "192.0.2.1"])
    assert code == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_error_bodies_are_openai_shaped(running: Any, chip: Chip, tmp_path: Path) -> None:
    pinned = simulated_policy(chip, tmp_path, allowedMeasurements=["cd" * 48])
    proxy = running(policy=pinned)
    answer = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": MODEL})
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["type"] == error["code"] == "attestation_refused"
    assert json.dumps(error).count("policy.measurement") == 1


def test_no_enclave_answering_is_a_503(running: Any) -> None:
    proxy = running(FakeGateway([], unavailable=["ns/pool-a/e0"]))
    with pytest.raises(openai.InternalServerError) as raised:
        proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert raised.value.status_code == 503
    assert raised.value.code == "no_attested_enclave"
    assert "ns/pool-a/e0 (?): attestation.unavailable" in raised.value.message


def test_an_unavailable_enclave_beside_a_verified_one_is_ignored(running: Any, chip: Chip) -> None:
    proxy = running(FakeGateway([FakeEnclave(chip)], unavailable=["ns/pool-a/e9"]))
    answer = proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == ANSWER


def test_concurrent_streams_share_one_attestation_round(running: Any, chip: Chip) -> None:
    gateway = FakeGateway([FakeEnclave(chip), FakeEnclave(chip, name="e1")])
    proxy = running(gateway)
    texts: list[str] = []

    def one() -> None:
        stream = proxy.sdk().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        texts.append("".join(c.choices[0].delta.content or "" for c in stream))

    workers = [threading.Thread(target=one) for _ in range(12)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert texts == [ANSWER] * 12
    assert gateway.attestations == 1
    assert len(gateway.inference) == 12
    assert len(gateway.hellos) <= 2  # at most one session per enclave
    assert proxy.log.getvalue().count("receipt ok") == 12


def test_an_http_1_0_client_gets_the_stream_until_the_connection_closes(running: Any) -> None:
    proxy = running()
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True}).encode()
    port = proxy.server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        raw = b""
        while piece := conn.recv(65536):
            raw += piece
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")  # the server's version; the body is 1.0-style
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert payload.count(b"data: ") == 7 and payload.endswith(b"data: [DONE]\n\n")
