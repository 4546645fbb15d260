"""Secret release (docs/sealed-mode.md, section 4) to a real agent process: the engine gets
the released key as its bearer token on every request, plain or sealed, and never the caller's
Authorization; other secrets become 0600 files for the engine; values never reach the log.
Only releases signed by the release key the agent pins are applied, each newer than the last;
an agent pinning none refuses them all, and its evidence vouches for the key it pins."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.attestation import evidence
from teeroute.attestation.policy import Policy
from teeroute.sealing import envelope, hpke, secrets
from tests import gateway_key

from .sealed_client import (
    EnclaveKeys,
    Sealer,
    agent_process,
    enclave_keys,
    gateway_session,
    post_sealed,
)
from .test_agent import chip_dir  # noqa: F401 - a fixture, used by name
from .test_agent_proxy import MODEL, engine_process

ENGINE_KEY = "sk-engine-7f3a9c0d1e2b"  # what the operator releases
CLIENT_KEY = "sk-gateway-client-key"  # what a caller of the agent sends
TEXT = "/v1/completions"
POOL = "team-a/llama"
OPERATOR = secrets.Signer.from_private(ed25519.Ed25519PrivateKey.generate())
PINNED = {"release_key": base64.b64encode(OPERATOR.public).decode(), "pool": POOL}
"""agent_process settings: the agent pins OPERATOR's release key and serves POOL."""


def sealed_release(
    keys: EnclaveKeys,
    values: dict[str, str],
    signer: secrets.Signer = OPERATOR,
    issued_ns: int | None = None,
) -> bytes:
    issued = time.time_ns() if issued_ns is None else issued_ns
    return secrets.seal_secrets(keys.hpke, POOL, values, signer, issued)


def post_release(agent: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{agent}/v1/secrets",
        content=body,
        headers={"Content-Type": envelope.SEALED_CONTENT_TYPE},
        timeout=10,
    )


def release(agent: str, keys: EnclaveKeys, values: dict[str, str]) -> httpx.Response:
    body = sealed_release(keys, values)
    return httpx.post(
        f"{agent}/v1/secrets",
        content=body,
        headers={"Content-Type": envelope.SEALED_CONTENT_TYPE},
        timeout=10,
    )


def plain(agent: str, authorization: str | None = None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization else {}
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    auth = gateway_key.signed_for(agent)
    return httpx.post(f"{agent}{TEXT}", json=body, headers=headers, auth=auth, timeout=30)


def sealed_status(agent: str, keys: EnclaveKeys, authorization: str | None = None) -> int:
    sealer = Sealer(keys, gateway_session(agent, keys))
    raw, exchange = sealer.seal(TEXT, {"model": MODEL, "prompt": "hi", "max_tokens": 2})
    headers = {"Authorization": authorization} if authorization else {}
    answer = post_sealed(agent, TEXT, raw, exchange, headers)
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
    directory = str(tmp_path / "s")
    with agent_process(chip_dir, closed_engine, log, secrets_dir=directory, **PINNED) as agent:
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
    with agent_process(chip_dir, engine, tmp_path / "agent.log", **PINNED) as agent:
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
    with agent_process(chip_dir, engine, log, secrets_dir=str(directory), **PINNED) as agent:
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
    with agent_process(chip_dir, engine, tmp_path / "agent.log", **PINNED) as agent:
        keys = enclave_keys(agent)
        first = sealed_release(keys, {secrets.ENGINE_API_KEY: ENGINE_KEY})
        assert post_release(agent, first).status_code == 204
        _, other = hpke.generate_key_pair()
        stranger = secrets.Signer.from_private(ed25519.Ed25519PrivateKey.generate())
        tampered = json.loads(sealed_release(keys, {"a": "b"}))
        tampered["meta"]["pool"] = "team-b/other"
        wrong_path, _ = envelope.seal_request(keys.hpke, {"path": TEXT}, b'{"secrets": {}}')
        not_json, _ = envelope.seal_request(keys.hpke, {"path": "/v1/secrets"}, b"[1, 2]")
        unsigned, _ = envelope.seal_request(
            keys.hpke, {"path": "/v1/secrets"}, b'{"secrets": {"engine-api-key": "mine"}}'
        )
        bodies = {
            "another enclave": secrets.seal_secrets(other, POOL, {"a": "b"}, OPERATOR, 1),
            "tampered": json.dumps(tampered).encode(),
            "wrong path": wrong_path.to_bytes(),
            "not an object": not_json.to_bytes(),
            "unsigned": unsigned.to_bytes(),
            "another signer": sealed_release(keys, {"engine-api-key": "mine"}, stranger),
            "another pool": secrets.seal_secrets(
                keys.hpke, "team-b/other", {"engine-api-key": "mine"}, OPERATOR, time.time_ns()
            ),
            "replayed": first,
            "older": sealed_release(keys, {"engine-api-key": "mine"}, issued_ns=1),
            "bad name": sealed_release(keys, {"../escape": "x"}),
            "bad bearer": sealed_release(keys, {"engine-api-key": "a\r\nb"}),
            "too large": sealed_release(keys, {"big": "x" * 70_000}),
        }
        answers = {name: post_release(agent, body) for name, body in bodies.items()}
        assert plain(agent).status_code == 200
    got = {name: (a.status_code, a.json()["error"]["type"]) for name, a in answers.items()}
    assert got == {
        "another enclave": (421, "sealed_key_mismatch"),
        "tampered": (400, "sealed_open_failed"),
        "wrong path": (400, "sealed_envelope_invalid"),
        "not an object": (400, "sealed_envelope_invalid"),
        "unsigned": (400, "sealed_envelope_invalid"),
        "another signer": (403, "release_refused"),
        "another pool": (403, "release_refused"),
        "replayed": (409, "release_stale"),
        "older": (409, "release_stale"),
        "bad name": (400, "secrets_invalid"),
        "bad bearer": (400, "secrets_invalid"),
        "too large": (413, "invalid_request"),
    }
    assert "release.key" in answers["another signer"].json()["error"]["message"]
    assert "pool.binding" in answers["another pool"].json()["error"]["message"]
    assert seen == [f"Bearer {ENGINE_KEY}"]  # the first release still holds


def test_an_agent_pinning_no_release_key_refuses_every_release(
    recorder: tuple[str, list[str | None]],
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    engine, seen = recorder
    with agent_process(chip_dir, engine, tmp_path / "agent.log") as agent:
        keys = enclave_keys(agent)
        refused = release(agent, keys, {secrets.ENGINE_API_KEY: ENGINE_KEY})
        assert plain(agent).status_code == 200
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "secret_release_disabled"
    assert seen == [None]


def _document(agent: str) -> dict[str, Any]:
    nonce = base64.b64encode(os.urandom(32)).decode()
    answer = httpx.post(f"{agent}/v1/attestation", json={"nonce": nonce}, timeout=10)
    document: dict[str, Any] = answer.json()
    return document


def _verified(document: dict[str, Any], chips: Path) -> bool:
    verdict = evidence.verify_document(
        evidence.EvidenceDocument.parse(document),
        now=dt.datetime.now(dt.UTC),
        policy=Policy(allowed_tee=frozenset({"simulated"})),
        trust=evidence.Trust((chips / "root.crt").read_bytes()),
    )
    return verdict.ok


def test_the_evidence_vouches_for_the_pinned_release_key(
    recorder: tuple[str, list[str | None]],
    chip_dir: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    engine, _ = recorder
    with agent_process(chip_dir, engine, tmp_path / "pinned.log", **PINNED) as agent:
        pinned = _document(agent)
    with agent_process(chip_dir, engine, tmp_path / "none.log") as agent:
        unpinned = _document(agent)
    assert pinned["enclave_keys"]["release"] == PINNED["release_key"]
    assert "release" not in unpinned["enclave_keys"]
    assert _verified(pinned, chip_dir) and _verified(unpinned, chip_dir)
    stranger = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    swapped = {**pinned["enclave_keys"], "release": base64.b64encode(stranger).decode()}
    dropped = {k: v for k, v in pinned["enclave_keys"].items() if k != "release"}
    added = {**unpinned["enclave_keys"], "release": PINNED["release_key"]}
    assert not _verified({**pinned, "enclave_keys": swapped}, chip_dir)
    assert not _verified({**pinned, "enclave_keys": dropped}, chip_dir)
    assert not _verified({**unpinned, "enclave_keys": added}, chip_dir)
