"""Secret release (docs/sealed-mode.md, section 4) to a real agent process: the engine gets
the released key as its bearer token on every request, plain or sealed, and never the caller's
Authorization; other secrets become 0600 files for the engine; values never reach the log."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from teeroute.sealing import envelope, hpke, secrets

from .sealed_client import EnclaveKeys, agent_process, enclave_keys, post_sealed, seal
from .test_agent import chip_dir  # noqa: F401 - a fixture, used by name
from .test_agent_proxy import MODEL, engine_process

ENGINE_KEY = "sk-engine-7f3a9c0d1e2b"  # what the operator releases
CLIENT_KEY = "sk-gateway-client-key"  # what a caller of the agent sends
TEXT = "/v1/completions"
POOL = "team-a/llama"


def release(agent: str, keys: EnclaveKeys, values: dict[str, str]) -> httpx.Response:
    body = secrets.seal_secrets(keys.hpke, POOL, values)
    return httpx.post(
        f"{agent}/v1/secrets",
        content=body,
        headers={"Content-Type": envelope.SEALED_CONTENT_TYPE},
        timeout=10,
    )


def plain(agent: str, authorization: str | None = None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization else {}
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    return httpx.post(f"{agent}{TEXT}", json=body, headers=headers, timeout=30)


def sealed_status(agent: str, keys: EnclaveKeys, authorization: str | None = None) -> int:
    sealed, opener = seal(keys, TEXT, {"model": MODEL, "prompt": "hi", "max_tokens": 2})
    headers = {"Authorization": authorization} if authorization else {}
    answer = post_sealed(agent, TEXT, sealed, opener, headers)
    assert answer.finished
    return answer.status


@pytest.fixture
def closed_engine(tmp_path: Path) -> Iterator[str]:
    """An engine that serves only requests bearing ENGINE_KEY (a relay miner's upstream)."""
    flags = ("--api-key-env", "SIM_ENGINE_KEY")
    with engine_process(tmp_path / "engine.log", *flags, env={"SIM_ENGINE_KEY": ENGINE_KEY}) as (
        url,
        _,
    ):
        yield url


def test_the_released_key_is_the_engines_bearer_for_plain_and_sealed_requests(
    closed_engine: str,
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    log = tmp_path / "agent.log"
    with agent_process(chip_dir, closed_engine, log, secrets_dir=str(tmp_path / "s")) as agent:
        keys = enclave_keys(agent)
        before = plain(agent, f"Bearer {ENGINE_KEY}")  # the caller's header never crosses
        released = release(agent, keys, {secrets.ENGINE_API_KEY: ENGINE_KEY})
        after = [plain(agent).status_code, plain(agent, f"Bearer {CLIENT_KEY}").status_code]
        after += [sealed_status(agent, keys), sealed_status(agent, keys, "Bearer x")]
    assert before.status_code == 401
    assert released.status_code == 204 and released.content == b""
    assert after == [200, 200, 200, 200]
    assert ENGINE_KEY not in log.read_text()
    assert not (tmp_path / "s" / secrets.ENGINE_API_KEY).exists()  # memory only


class _Recorder(BaseHTTPRequestHandler):
    """An engine that answers every completion and records the Authorization it got."""

    seen: list[str | None]

    def do_GET(self) -> None:
        self._answer({})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(self.headers.get("Authorization"))
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        self._answer({"model": MODEL, "choices": [], "usage": usage})

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_the_callers_authorization_never_reaches_the_engine(
    recorder: tuple[str, list[str | None]],
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    engine, seen = recorder
    with agent_process(chip_dir, engine, tmp_path / "agent.log") as agent:
        keys = enclave_keys(agent)
        statuses = [plain(agent, f"Bearer {CLIENT_KEY}").status_code]
        statuses.append(sealed_status(agent, keys, f"Bearer {CLIENT_KEY}"))
        assert release(agent, keys, {secrets.ENGINE_API_KEY: ENGINE_KEY}).status_code == 204
        statuses.append(plain(agent, f"Bearer {CLIENT_KEY}").status_code)
        statuses.append(sealed_status(agent, keys, f"Bearer {CLIENT_KEY}"))
    assert statuses == [200] * 4
    assert seen == [None, None, f"Bearer {ENGINE_KEY}", f"Bearer {ENGINE_KEY}"]


def test_other_secrets_become_private_files_and_a_release_replaces_the_last(
    recorder: tuple[str, list[str | None]],
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    engine, _ = recorder
    directory = tmp_path / "run" / "secrets"
    log = tmp_path / "agent.log"
    with agent_process(chip_dir, engine, log, secrets_dir=str(directory)) as agent:
        keys = enclave_keys(agent)
        first = release(agent, keys, {"hf-token": "hf_first_value", "tls.key": "PEM-1"})
        files_first = {p.name: p.read_text() for p in directory.iterdir()}
        second = release(agent, keys, {"hf-token": "hf_second_value"})
        files_second = {p.name: p.read_text() for p in directory.iterdir()}
        mode = stat.S_IMODE((directory / "hf-token").stat().st_mode)
        directory_mode = stat.S_IMODE(directory.stat().st_mode)
    assert (first.status_code, second.status_code) == (204, 204)
    assert files_first == {"hf-token": "hf_first_value", "tls.key": "PEM-1"}
    assert files_second == {"hf-token": "hf_second_value"}
    assert (mode, directory_mode) == (0o600, 0o700)
    text = log.read_text()
    assert "secrets: 2 released" in text
    assert not [value for value in ("hf_first_value", "hf_second_value", "PEM-1") if value in text]


def test_bad_releases_are_refused_and_keep_the_last_set(
    recorder: tuple[str, list[str | None]],
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    engine, seen = recorder
    with agent_process(chip_dir, engine, tmp_path / "agent.log") as agent:
        keys = enclave_keys(agent)
        assert release(agent, keys, {secrets.ENGINE_API_KEY: ENGINE_KEY}).status_code == 204
        _, other = hpke.generate_key_pair()
        tampered = json.loads(secrets.seal_secrets(keys.hpke, POOL, {"a": "b"}))
        tampered["meta"]["pool"] = "team-b/other"
        wrong_path, _ = envelope.seal_request(keys.hpke, {"path": TEXT}, b'{"secrets": {}}')
        not_json, _ = envelope.seal_request(keys.hpke, {"path": "/v1/secrets"}, b"[1, 2]")
        bodies = {
            "another enclave": secrets.seal_secrets(other, POOL, {"a": "b"}),
            "tampered": json.dumps(tampered).encode(),
            "wrong path": wrong_path.to_bytes(),
            "not an object": not_json.to_bytes(),
            "bad name": secrets.seal_secrets(keys.hpke, POOL, {"../escape": "x"}),
            "bad bearer": secrets.seal_secrets(keys.hpke, POOL, {"engine-api-key": "a\r\nb"}),
            "too large": secrets.seal_secrets(keys.hpke, POOL, {"big": "x" * 70_000}),
        }
        answers = {
            name: httpx.post(f"{agent}/v1/secrets", content=body, timeout=10)
            for name, body in bodies.items()
        }
        assert plain(agent).status_code == 200
    got = {name: (a.status_code, a.json()["error"]["type"]) for name, a in answers.items()}
    assert got == {
        "another enclave": (421, "sealed_key_mismatch"),
        "tampered": (400, "sealed_open_failed"),
        "wrong path": (400, "sealed_envelope_invalid"),
        "not an object": (400, "sealed_envelope_invalid"),
        "bad name": (400, "secrets_invalid"),
        "bad bearer": (400, "secrets_invalid"),
        "too large": (413, "invalid_request"),
    }
    assert seen == [f"Bearer {ENGINE_KEY}"]  # the first release still holds
