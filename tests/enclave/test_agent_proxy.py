"""The agent as the pod's front door: a real engine simulator and a real agent process on
loopback, the official openai SDK against the agent, and the engine's own answers to compare.
Streams are relayed as they arrive, a client that leaves closes the engine connection, and the
agent's own errors keep its JSON shape. The agents pin the tests' gateway key and are called as
the gateway calls them, with its authorization (`tests.gateway_key`)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import openai
import pytest

from teeroute.attestation.providers import SimulatedProvider, code_measurement
from teeroute.sealing import gateway_auth
from teeroute_enclave import proxy
from teeroute_enclave.__main__ import PACKAGE as AGENT
from teeroute_enclave.gateway_auth import Callers
from teeroute_enclave.keys import EnclaveKeys
from teeroute_enclave.server import AgentServer
from teeroute_engine_sim.generation import natural_length, request_digest
from tests import gateway_key

from .test_agent import chip_dir, serve  # noqa: F401 - a fixture, used by name

MODEL = "sim-model"
PROMPT = "tell me about enclaves"
PACE = 20  # tokens per second: a 40-token stream lasts about 2 s
START_TIMEOUT_S = 30
ESTABLISHED = "01"  # the TCP state in /proc/net/tcp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def long_answer_seed(tokens: int) -> int:
    """A request seed for which the engine's answer to PROMPT runs to at least `tokens`
    tokens (its answers are a pure function of the request)."""
    return next(
        seed
        for seed in range(10_000)
        if natural_length(request_digest(seed=0, model=MODEL, request_seed=seed, prompt=PROMPT))
        >= tokens
    )


@contextmanager
def running(
    argv: list[str], env: dict[str, str], health: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A process with only `env` of the TEEROUTE_ variables, ready once `health` answers 200."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TEEROUTE_")}
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, stdout=output, stderr=subprocess.STDOUT, env={**environment, **env}
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(health):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{argv[2]} did not become healthy: {log.read_text()}")
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def engine_process(
    log: Path, *flags: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    argv = [sys.executable, "-m", "teeroute_engine_sim", "--model", MODEL, "--host", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}"
    argv += [*flags, "--port", str(port)]
    with running(argv, env or {}, f"{url}/health", log) as process:
        yield url, process


@contextmanager
def agent_process(chips: Path, engine_url: str, log: Path) -> Iterator[str]:
    port = free_port()
    env = {
        "TEEROUTE_TEE": "simulated",
        "NODE_NAME": "node-a",
        "TEEROUTE_SIMULATED_DIR": str(chips),
        "TEEROUTE_AGENT_PORT": str(port),
        "TEEROUTE_ENGINE_URL": engine_url,
        **gateway_key.PINNED,
    }
    url = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "teeroute_enclave"], env, f"{url}/healthz", log):
        yield url


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    with engine_process(log, "--tokens-per-s", str(PACE)) as (url, _):
        yield url


@pytest.fixture(scope="module")
def agent(
    engine: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    with agent_process(chip_dir, engine, tmp_path_factory.mktemp("agent") / "agent.log") as url:
        yield url


def sdk(url: str, as_gateway: bool = True) -> openai.OpenAI:
    """The openai SDK against an agent as the gateway (each request signed for that agent's
    key); `as_gateway=False` for a bare engine, which has no evidence and checks nothing."""
    auth = gateway_key.signed_for(url) if as_gateway else None
    client = httpx.Client(auth=auth, timeout=60)
    return openai.OpenAI(
        base_url=f"{url}/v1", api_key="not-checked", max_retries=0, http_client=client
    )


def test_chat_completion_through_the_agent_equals_the_engines(agent: str, engine: str) -> None:
    messages: Any = [{"role": "user", "content": "hello"}]
    answers = [
        sdk(url, url == agent).chat.completions.create(
            model=MODEL, messages=messages, max_tokens=8, seed=1
        )
        for url in (agent, engine)
    ]
    relayed, direct = (answer.model_dump(exclude={"id", "created"}) for answer in answers)
    assert relayed == direct
    assert relayed["choices"][0]["message"]["content"]


def test_text_completion_through_the_agent_equals_the_engines(agent: str, engine: str) -> None:
    answers = [
        sdk(url, url == agent).completions.create(model=MODEL, prompt=PROMPT, max_tokens=8)
        for url in (agent, engine)
    ]
    relayed, direct = (answer.model_dump(exclude={"id", "created"}) for answer in answers)
    assert relayed == direct


def test_streamed_chat_arrives_in_chunks_and_ends_with_usage(agent: str) -> None:
    client = sdk(agent)
    messages: Any = [{"role": "user", "content": "hello"}]
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 2
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage


def test_models_lists_the_engines_model(agent: str) -> None:
    assert [model.id for model in sdk(agent).models.list()] == [MODEL]


def test_streams_are_relayed_as_they_arrive_not_buffered(agent: str) -> None:
    start = time.monotonic()
    arrivals = [
        time.monotonic() - start
        for _ in sdk(agent).completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=40, seed=long_answer_seed(40), stream=True
        )
    ]
    assert len(arrivals) >= 40
    assert arrivals[0] < arrivals[-1] / 2  # a buffering proxy delivers all at the end


def engine_connections(engine_url: str) -> int:
    """Established TCP connections to or from the engine's port (both ends are local)."""
    port = f"{int(engine_url.rsplit(':', 1)[1]):04X}"
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1
        for fields in (row.split() for row in rows)
        if fields[3] == ESTABLISHED and port in (fields[1][-4:], fields[2][-4:])
    )


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_client_leaving_mid_stream_closes_the_engine_connection(agent: str, engine: str) -> None:
    client = sdk(agent)
    tokens = 200  # 10 s of stream at the engine's pace
    stream = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=tokens, seed=long_answer_seed(tokens), stream=True
    )
    next(iter(stream))
    assert engine_connections(engine) > 0  # the agent is relaying from the engine
    left = time.monotonic()
    stream.close()
    remaining_s = tokens / PACE - 1
    assert wait_until(lambda: engine_connections(engine) == 0, remaining_s)
    assert time.monotonic() - left < remaining_s  # closed by the agent, not by the stream's end
    assert [model.id for model in client.models.list()] == [MODEL]
    assert client.completions.create(model=MODEL, prompt="again", max_tokens=2).choices


def test_a_body_over_8_mib_is_refused_with_413(agent: str) -> None:
    body = b'{"model": "sim-model", "prompt": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    answer = httpx.post(
        f"{agent}/v1/completions",
        content=body,
        headers={"Content-Type": "application/json"},
        auth=gateway_key.signed_for(agent),
        timeout=60,
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "invalid_request"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("Content-Length", "abc")], 400),
        ([("Content-Length", "-2")], 400),
        ([("Content-Length", "2"), ("Content-Length", "3")], 400),
        ([("Transfer-Encoding", "chunked")], 411),
    ],
)
def test_bad_body_framing_gets_the_agents_json_error(
    agent: str, headers: list[tuple[str, str]], status: int
) -> None:
    connection = http.client.HTTPConnection(agent.removeprefix("http://"), timeout=10)
    connection.putrequest("POST", "/v1/chat/completions", skip_accept_encoding=True)
    signed = gateway_key.header("POST", "/v1/chat/completions", b"{}", "")  # well formed
    connection.putheader(gateway_auth.HEADER, signed[gateway_auth.HEADER])
    for name, value in headers:
        connection.putheader(name, value)
    connection.endheaders(b"{}")
    answer = connection.getresponse()
    body = httpx.Response(answer.status, content=answer.read()).json()
    connection.close()
    assert (answer.status, body["error"]["type"]) == (status, "invalid_request")


def test_an_http_1_0_client_gets_the_stream_until_the_connection_closes(agent: str) -> None:
    body = b'{"model": "sim-model", "prompt": "hi", "max_tokens": 3, "stream": true}'
    (signed,) = gateway_key.header(
        "POST", "/v1/completions", body, gateway_key.hpke_key_id(agent)
    ).items()
    request = (
        b"POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
        b"%s: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (signed[0].encode(), signed[1].encode(), len(body), body)
    )
    host, port = agent.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(request)
        answer = b"".join(iter(lambda: raw.recv(65536), b""))
    head, _, stream = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"text/event-stream" in head and b"chunked" not in head.lower()
    assert stream.endswith(b"data: [DONE]\n\n")


def test_a_stopped_engine_is_503_engine_unavailable(
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    with (
        engine_process(tmp_path / "engine.log") as (engine_url, engine),
        agent_process(chip_dir, engine_url, tmp_path / "agent.log") as url,
    ):
        client = sdk(url)
        assert [model.id for model in client.models.list()] == [MODEL]
        engine.terminate()
        engine.wait(timeout=15)
        with pytest.raises(openai.APIStatusError) as raised:
            client.models.list()
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 503
    assert raised.value.status_code == 503
    assert raised.value.body == {"message": ANY, "type": "engine_unavailable"}


@pytest.fixture
def in_process_agent(
    chip_dir: Path,  # noqa: F811 - the imported fixture
) -> Iterator[Callable[[str, float], str]]:
    """An agent in this process (to shorten its engine timeout) for engines that misbehave."""
    servers: list[AgentServer] = []

    def start(engine_url: str, timeout_s: float) -> str:
        keys = EnclaveKeys.generate()
        provider = SimulatedProvider(chip_dir, "node-a", code_measurement(AGENT))
        callers = Callers([gateway_key.PUBLIC])
        server = AgentServer(
            ("127.0.0.1", 0), provider, keys, engine_url, timeout_s, callers=callers
        )
        servers.append(server)
        return str(serve(servers[-1]))

    yield start
    for server in servers:
        server.shutdown()


def test_an_engine_that_never_answers_is_504(
    in_process_agent: Callable[[str, float], str],
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        url = in_process_agent(f"http://127.0.0.1:{silent.getsockname()[1]}", 0.5)
        answer = httpx.get(f"{url}/v1/models", auth=gateway_key.signed_for(url), timeout=10)
    assert (answer.status_code, answer.json()["error"]["type"]) == (504, "engine_timeout")


ONE_PIECE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
)


@contextmanager
def engine_sending_one_piece(then_silent_s: float) -> Iterator[str]:
    """An engine that answers one piece of a stream, then is silent for `then_silent_s` and
    closes the connection, unfinished."""
    with socket.create_server(("127.0.0.1", 0)) as engine:

        def answer() -> None:
            conn, _ = engine.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(ONE_PIECE)
                time.sleep(then_silent_s)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{engine.getsockname()[1]}"
        thread.join()


@pytest.mark.parametrize(
    ("silent_s", "error"), [(2.0, proxy.EngineTimeout), (0.0, proxy.EngineFailed)]
)
def test_an_engine_silent_mid_answer_times_out_one_that_hangs_up_broke_off(
    silent_s: float, error: type[proxy.EngineError]
) -> None:
    with (
        engine_sending_one_piece(silent_s) as url,
        proxy.forward(url, "POST", "/v1/chat/completions", [], b"{}", 0.3) as answer,
    ):
        pieces = answer.chunks()
        assert next(pieces) == b"hello"
        began = time.monotonic()
        with pytest.raises(error):
            next(pieces)
        assert time.monotonic() - began < 1.5  # the engine's timeout (0.3 s), not its silence


def test_no_engine_configured_is_503(in_process_agent: Callable[[str, float], str]) -> None:
    url = in_process_agent("", 1)
    signed = gateway_key.signed_for(url)
    answer = httpx.post(f"{url}/v1/chat/completions", json={}, auth=signed, timeout=10)
    assert (answer.status_code, answer.json()["error"]["type"]) == (503, "engine_unavailable")


def test_only_end_to_end_headers_of_the_allowlist_reach_the_engine() -> None:
    sent = [
        ("content-type", "application/json"),
        ("Accept", "text/event-stream"),
        ("Authorization", "Bearer sk-secret"),
        ("Cookie", "a=b"),
        ("Accept-Encoding", "gzip"),
        ("Connection", "keep-alive, X-Request-Id"),
        ("X-Request-Id", "r-1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
    ]
    assert proxy.request_headers(sent) == {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
    }
    assert proxy.request_headers([("X-Request-Id", "r-1"), ("X-Request-Id", "r-2")]) == {
        "X-Request-Id": "r-1"
    }


def test_only_content_headers_of_the_engine_reach_the_client() -> None:
    answered = [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("transfer-encoding", "chunked"),
        ("content-length", "12"),
        ("connection", "close"),
        ("server", "uvicorn"),
        ("date", "today"),
    ]
    assert proxy.response_headers(answered) == answered[:2]


@pytest.mark.parametrize(
    ("values", "length", "error"),
    [
        ([], 0, None),
        (["12"], 12, None),
        (["12", "12"], 12, None),
        ([" 7 "], 7, None),
        (["100"], 0, proxy.BodyTooLarge),
        (["abc"], 0, proxy.BadContentLength),
        (["-1"], 0, proxy.BadContentLength),
        (["+1"], 0, proxy.BadContentLength),
        (["1", "2"], 0, proxy.BadContentLength),
        (["\u0661"], 0, proxy.BadContentLength),  # a digit, but not an ASCII one
    ],
)
def test_content_length(values: list[str], length: int, error: type[Exception] | None) -> None:
    if error is None:
        assert proxy.content_length(values, limit=99) == length
    else:
        with pytest.raises(error):
            proxy.content_length(values, limit=99)


def test_chunks_are_framed_by_their_hex_length() -> None:
    assert proxy.chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
