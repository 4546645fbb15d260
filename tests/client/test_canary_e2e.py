"""The gateway never holds a sealed prompt: a unique canary sent through `teeroute proxy` ->
gateway -> simulated-TEE miner (every part a real process, the gateway with its access log,
console traces and metrics on) appears nowhere the gateway writes (log, traces, metrics,
ledger files) nor anywhere in its memory afterwards, whether the client keeps a session with
the enclave or seals each request on its own (`--one-shot`). The control: a second canary
sent *plain* through the same gateway (which seals it only on the hop) is found in its
memory, so the scan does see what the process held. The gateway-sealed mode's counterpart
(the miner's host never sees the prompt) is in tests/gateway/test_sealed_sessions.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from ..gateway.miners import agent, chip_dir, verified_lease
from ..gateway.procs import Proc, create_key, engine, gateway
from .test_proxy_e2e import proxy, sdk, write_policy

pytestmark = pytest.mark.timeout(240)

MODEL = "sim-model"
PLAIN_MODEL = "sim-plain"
CHUNK = 16 << 20


def memory_contains(pid: int, needle: bytes) -> bool:
    """Whether any readable mapping of the process holds `needle` (a dump of its memory)."""
    proc = Path(f"/proc/{pid}")
    with (proc / "maps").open() as maps, (proc / "mem").open("rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if _region_contains(mem, start, end, needle):
                return True
    return False


def _region_contains(mem: Any, start: int, end: int, needle: bytes) -> bool:
    tail = b""
    for offset in range(start, end, CHUNK):
        try:
            mem.seek(offset)
            data = tail + mem.read(min(CHUNK, end - offset))
        except OSError:
            return False
        if needle in data:
            return True
        tail = data[-len(needle) :]
    return False


def _config(path: Path, lease: dict[str, Any]) -> Path:
    def route(name: str, model: str, sealing: str) -> dict[str, Any]:
        return {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "Route",
            "metadata": {"name": name},
            "spec": {
                "model": model,
                "backends": [{"pool": "honest"}],
                "constraints": {"allowedTee": ["simulated"]},
                "sealing": sealing,
            },
        }

    docs = [
        {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "GatewayConfig",
            "spec": {"ledger": "sqlite:///ledger.db", "accessLog": True, "tracing": "console"},
        },
        {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "MinerPool",
            "metadata": {"name": "honest"},
            "spec": {
                "models": [{"name": MODEL, "contextLength": 8192}],
                "tee": {"type": "simulated"},
                "pricing": {"inputPerMillion": "1", "outputPerMillion": "2"},
                "endpoints": [{"name": "m0", "url": lease["url"]}],
            },
            "status": {"endpoints": [lease]},
        },
        route("sealed", MODEL, "required"),
        route("plain", PLAIN_MODEL, "gateway"),
    ]
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.fixture
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("canary")
    chips = chip_dir(tmp_path_factory.mktemp("chips"))
    with (
        engine(tmp, "e0") as eng,
        agent(chips, eng.url, tmp / "agent.log", TEEROUTE_AGENT_REQUIRE_SEALED="true") as miner,
    ):
        lease = verified_lease("m0", miner.url, chips)
        config = _config(tmp / "gateway.yaml", lease)
        key = create_key(config, "10")
        with gateway(config) as gw:
            yield {"tmp": tmp, "gw": gw, "key": key, "chips": chips, "lease": lease}


def _ask(client: openai.OpenAI, model: str, canary: str) -> str:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"remember {canary} for me"}],
        max_tokens=24,
        stream=True,
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def _await_spans(gw: Proc) -> None:
    """Spans leave in batches (every 5 s): wait until the requests' spans are in the log."""
    deadline = time.monotonic() + 20
    while gw.log.read_bytes().count(b'"gen_ai.operation.name"') < 2:
        assert time.monotonic() < deadline, "the gateway wrote no trace spans"
        time.sleep(0.2)


def _written_by(gw: Proc, tmp: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in tmp.iterdir() if p.name.startswith("ledger.db")}
    return {"log": gw.log.read_bytes(), **files}


@pytest.mark.parametrize("options", [(), ("--one-shot",)], ids=["session", "one-shot"])
def test_a_sealed_canary_never_exists_in_the_gateway(
    parts: dict[str, Any], options: tuple[str, ...]
) -> None:
    gw, key, tmp = parts["gw"], parts["key"], parts["tmp"]
    sealed_canary = f"canary-sealed-{uuid.uuid4().hex}"
    plain_canary = f"canary-plain-{uuid.uuid4().hex}"
    policy = write_policy(tmp / "policy.json", parts["chips"], parts["lease"]["measurement"])
    with proxy(gw, policy, key, tmp / "proxy.log", *options) as local:
        assert _ask(sdk(local.url), MODEL, sealed_canary)
    assert _ask(sdk(gw.url, key), PLAIN_MODEL, plain_canary)

    pid = gw.process.pid
    assert memory_contains(pid, plain_canary.encode()), "the scan must see what it held"
    assert not memory_contains(pid, sealed_canary.encode())

    metrics = httpx.get(f"{gw.url}/metrics", timeout=10).content
    _await_spans(gw)
    gw.stop()
    written = {"metrics": metrics, **_written_by(gw, tmp)}
    assert b"gen_ai.usage.output_tokens" in written["log"]  # traces were written
    assert b'"request_id"' in written["log"]  # so was the access log
    assert "ledger.db" in written
    for name, data in written.items():
        assert sealed_canary.encode() not in data, name
        assert plain_canary.encode() not in data, name  # the gateway logs no content either
