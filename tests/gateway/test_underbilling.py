"""Free or under-billed answers (issue 14, hole 5), tried as the attackers would against a real
gateway, real engine simulators, a real enclave agent (simulated TEE) and a dishonest miner
process: a client leaving a sealed stream early, limits that disagree, bounds multiplied by n,
best_of or a batch of prompts, a sealed body without its bound, requests outliving their hold,
and a miner over-claiming a non-streamed answer. Every answered request gets a bounded bill
with its reason, and settlement shows what miners claimed beyond what they were paid."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from teeroute.sealing.frames import FrameDecoder
from teeroute_engine_sim.generation import natural_length, request_digest
from teeroute_sandbox.testing import wait_for
from tests.enclave.test_agent_proxy import PROMPT, long_answer_seed

from . import sealed_v2
from .miners import agent, chip_dir, verified_lease
from .procs import Proc, create_key, engine, free_port, gateway, lease, started

pytestmark = pytest.mark.timeout(240)

ADMIN = "admin-" + os.urandom(8).hex()
CLAIM = 100_000  # what the dishonest miner says every answer cost, in output tokens
CHAT, TEXT = "/v1/chat/completions", "/v1/completions"
PACE = 10  # tokens per second of the sealed setup's engine


def _pool(name: str, url: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "MinerPool",
        "metadata": {"name": name},
        "spec": {
            "models": [{"name": "sim-model", "contextLength": 8192}],
            "tee": {"type": "simulated"},
            "pricing": {"inputPerMillion": "1", "outputPerMillion": "2"},
            "endpoints": [{"name": "m0", "url": url}],
        },
        "status": {"endpoints": [{**entry, "name": "m0", "url": url}]},
    }


def _route(model: str, pool: str, sealing: str) -> dict[str, Any]:
    return {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": model},
        "spec": {
            "model": model,
            "backends": [{"pool": pool}],
            "constraints": {"allowedTee": ["simulated"]},
            "sealing": sealing,
        },
    }


def _config(path: Path, docs: list[dict[str, Any]], **settings: Any) -> Path:
    spec = {
        "ledger": "sqlite:///ledger.db",
        "adminKeySha256": [hashlib.sha256(ADMIN.encode()).hexdigest()],
        **settings,
    }
    config = {"apiVersion": "teeroute.dev/v1alpha1", "kind": "GatewayConfig", "spec": spec}
    path.write_text(yaml.safe_dump_all([config, *docs]))
    return path


@contextmanager
def liar(tmp: Path, engine_url: str) -> Iterator[Proc]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.gateway.liar", "--port", str(port)]
    argv += ["--engine", engine_url, "--claim", str(CLAIM)]
    with started(argv, port, tmp / "liar.log", "/health") as proc:
        yield proc


def _record(gw: Proc, key: str, rid: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        answer = httpx.get(
            f"{gw.url}/v1/generation",
            params={"id": rid},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        return answer.json()["data"] if answer.status_code == 200 else None  # type: ignore[no-any-return]

    return wait_for(found, timeout_s=30, what=f"the usage record of {rid}")


def _post(gw: Proc, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        gw.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


# --- plain hops: an engine simulator and a dishonest miner ---------------------------------

Plain = tuple[Proc, str, str]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plain]:
    tmp = tmp_path_factory.mktemp("plain")
    with engine(tmp, "fast") as honest, liar(tmp, honest.url) as dishonest:
        docs = [
            _pool("honest", honest.url, lease("m0")),
            _pool("liar", dishonest.url, lease("m0")),
            _route("sim-model", "honest", "off"),
            _route("sim-liar", "liar", "off"),
        ]
        config = _config(tmp / "gateway.yaml", docs)
        key = create_key(config, "10")
        with gateway(config) as gw:
            yield gw, key, create_key(config, "0.005")


def test_disagreeing_limits_bind_the_miner_to_the_smaller_one_held_for(plain: Plain) -> None:
    """(b) The hold was computed on one limit while the engine obeyed the other."""
    gw, key, _ = plain
    body = {"model": "sim-model", "prompt": PROMPT, "seed": long_answer_seed(200)}
    body |= {"max_completion_tokens": 5, "max_tokens": 200}  # the text API obeys max_tokens
    answer = _post(gw, key, TEXT, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] <= 5
    record = _record(gw, key, answer.headers["x-request-id"])
    assert record["output_tokens"] <= 5
    assert (record["charged_nano"], record["capped"]) == (record["cost_nano"], False)


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        (CHAT, {"n": 4}),
        (TEXT, {"best_of": 4}),
        (TEXT, {"prompt": [PROMPT] * 4}),
    ],
    ids=["n", "best_of", "a batch of prompts"],
)
def test_every_completion_asked_for_is_held_for(
    plain: Plain, path: str, extra: dict[str, Any]
) -> None:
    """(c) n, best_of and prompt lists multiply the output: the hold must cover all of it.
    This key's credit covers one completion of 1000 tokens, not four."""
    gw, _, poor = plain
    body: dict[str, Any] = {"model": "sim-model", "max_tokens": 1000}
    body |= {"messages": [{"role": "user", "content": PROMPT}]} if path == CHAT else {}
    body |= {"prompt": PROMPT} if path == TEXT else {}
    answer = _post(gw, poor, path, body | extra)
    assert answer.status_code == 402, answer.text
    assert answer.json()["error"]["code"] == "insufficient_credit"
    assert _post(gw, poor, path, body).status_code == 200  # one completion is within credit


def test_more_completions_than_the_gateway_holds_for_is_a_typed_400(plain: Plain) -> None:
    gw, key, _ = plain
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "x"}], "n": 1000}
    answer = _post(gw, key, CHAT, body)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "n"


@pytest.mark.parametrize(("max_tokens", "reason"), [(1000, "claim_capped"), (50, "bound_capped")])
def test_a_non_streamed_over_claim_is_capped_and_settlement_shows_the_miner_underpaid(
    plain: Plain, max_tokens: int, reason: str
) -> None:
    """(e) the claim cap applies to whole answers too; (f) the ledger sees the uncapped
    claim, marks the record capped and settlement counts it."""
    gw, key, _ = plain
    body = {"model": "sim-liar", "prompt": PROMPT, "seed": _short_answer_seed()}
    answer = _post(gw, key, TEXT, body | {"max_tokens": max_tokens})
    assert answer.status_code == 200, answer.text
    billed = answer.json()["usage"]["completion_tokens"]
    record = _record(gw, key, answer.headers["x-request-id"])
    assert record["output_tokens"] == billed < CLAIM
    assert billed <= max_tokens
    assert (record["output_reported"], record["bill_reason"]) == (False, reason)
    assert record["capped"] and record["claimed_nano"] > record["charged_nano"] > 0
    report = httpx.get(
        f"{gw.url}/v1/settlement", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
    )
    [row] = [r for r in report.json()["data"] if r["pool"] == "default/liar"]
    assert row["capped"] >= 1 and row["underpaid_nano"] > 0


def _short_answer_seed() -> int:
    """A seed for which the engine's answer to PROMPT is short (20 tokens at most), so that
    10x our count of it stays under the bound and the claim cap is what binds."""
    return next(
        seed
        for seed in range(10_000)
        if natural_length(
            request_digest(seed=0, model="sim-model", request_seed=seed, prompt=PROMPT)
        )
        <= 20
    )


# --- sealed hops: a real enclave agent in front of a paced engine --------------------------

Sealed = tuple[Proc, str, dict[str, Any]]


@pytest.fixture(scope="module")
def miner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("miner")
    chips = chip_dir(tmp_path_factory.mktemp("chips"))
    with (
        engine(tmp, "paced", "--tokens-per-s", str(PACE)) as eng,
        # billing is the point here, not who may call the agent (tests of hole 3 do that)
        agent(chips, eng.url, tmp / "agent.log", TEEROUTE_AGENT_ALLOW_ANY_CALLER="true") as enclave,
    ):
        yield verified_lease("m0", enclave.url, chips)


def _sealed_gateway(tmp: Path, entry: dict[str, Any], **settings: Any) -> Path:
    docs = [_pool("honest", entry["url"], entry), _route("sim-model", "honest", "gateway")]
    return _config(tmp / "gateway.yaml", docs, **settings)


@pytest.fixture(scope="module")
def sealed(miner: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sealed]:
    config = _sealed_gateway(tmp_path_factory.mktemp("sealed"), miner)
    key = create_key(config, "10")
    with gateway(config) as gw:
        yield gw, key, miner


def _long_body(tokens: int, stream: bool = True) -> dict[str, Any]:
    seed = long_answer_seed(tokens)
    return {"model": "sim-model", "prompt": PROMPT, "max_tokens": tokens, "seed": seed} | {
        "stream": stream
    }


def _seal(entry: dict[str, Any], body: dict[str, Any], bound: bool = True) -> bytes:
    """A client's one-shot sealed request (wire v2) to the enclave of `entry`."""
    return sealed_v2.oneshot(entry, body, TEXT, bound)[0]


def _leave_after(
    gw: Proc, key: str, content: bytes, headers: dict[str, str], enough: Callable[[bytes], bool]
) -> str:
    """Reads the answer until `enough` of it came, then leaves; the request's id."""
    with httpx.stream(
        "POST",
        gw.url + TEXT,
        content=content,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=60,
    ) as answer:
        assert answer.status_code == 200
        seen = b""
        for chunk in answer.iter_raw():
            seen += chunk
            if enough(seen):
                break
        return answer.headers["x-request-id"]


def _events(count: int) -> Callable[[bytes], bool]:
    return lambda seen: seen.count(b"\n\n") >= count


def _frames(count: int) -> Callable[[bytes], bool]:
    def enough(seen: bytes) -> bool:
        return len(FrameDecoder().feed(seen)) >= count

    return enough


def test_a_client_leaving_a_client_sealed_stream_early_is_billed_for_the_frames(
    sealed: Sealed,
) -> None:
    """(a) no receipt comes when the client leaves: billed from the frames relayed."""
    gw, key, entry = sealed
    content = _seal(entry, _long_body(100))
    rid = _leave_after(gw, key, content, {"Content-Type": sealed_v2.V2}, _frames(4))
    record = _record(gw, key, rid)
    assert record["charged_nano"] == record["cost_nano"] > 0
    assert 0 < record["output_tokens"] < 100  # left long before the end
    assert (record["receipt_status"], record["bill_reason"]) == ("missing", "receipt_missing")


def test_a_client_leaving_a_gateway_sealed_stream_early_is_billed_for_what_was_relayed(
    sealed: Sealed,
) -> None:
    """(a) the gateway opened the frames itself: billed from its own count of them."""
    gw, key, _ = sealed
    content = httpx.Request("POST", "/", json=_long_body(100)).content
    rid = _leave_after(gw, key, content, {"Content-Type": "application/json"}, _events(6))
    record = _record(gw, key, rid)
    assert record["charged_nano"] == record["cost_nano"] > 0
    assert 0 < record["output_tokens"] < 100
    assert (record["receipt_status"], record["bill_reason"]) == ("missing", "receipt_missing")


def test_a_client_sealed_request_without_its_bound_is_refused(sealed: Sealed) -> None:
    """(c) without meta.max_tokens the gateway held its default while the enclave was
    unbounded: the bound is required (and the agent refuses such a body too)."""
    gw, key, entry = sealed
    content = _seal(entry, _long_body(100, stream=False), bound=False)  # no max_tokens in meta
    answer = sealed_v2.post_sealed(gw.url, key, content, TEXT)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("sealed_bound_missing", "meta.max_tokens")


@pytest.mark.parametrize("stream", [True, False])
def test_a_request_outliving_its_hold_ttl_keeps_its_credit_held_and_is_charged(
    miner: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, stream: bool
) -> None:
    """(d) holds live 2 s here and the reaper runs every second; the answer takes 4 s."""
    config = _sealed_gateway(tmp_path_factory.mktemp("short-holds"), miner, holdTtlS=2)
    key = create_key(config, "10")
    with gateway(config, "short-holds") as gw:
        answer = _post(gw, key, TEXT, _long_body(4 * PACE, stream))
        assert answer.status_code == 200, answer.text
        record = _record(gw, key, answer.headers["x-request-id"])
    assert record["receipt_status"] == "valid"
    assert record["output_tokens"] == 4 * PACE
    assert (record["charged_nano"], record["capped"]) == (record["cost_nano"], False)
    assert record["charged_nano"] > 0
