"""The sealed-mode benchmark's parts: the kinds of request, the gateway config with one Route
per mode, the pool script, sealing and opening as a client, the ledger tally, rounds merged,
ratios, the bottleneck, the verdicts and the report; then one very short end-to-end run
(about 35 s)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import sealed
from cryptography.hazmat.primitives.asymmetric import ed25519
from gatewaybench import procs, wrk
from sealedbench import client, floor, kinds, ledger, load, modes, report, stats
from sealedbench.kinds import KINDS

from teeroute.sealing import frames, hpke, session
from teeroute.sealing.errors import SealingError
from teeroute_gateway.ledger.sqlite_ops import SCHEMA
from teeroute_gateway.sources import file as file_source

BENCH = Path(sealed.__file__).resolve().parent
CORES = (0, 1)
SHORT, STREAMED, LONG = KINDS


def lease(public: bytes, signing: bytes) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "url": "http://127.0.0.1:8443",
        "attestedAt": now.strftime(fmt),
        "expiresAt": (now + dt.timedelta(hours=1)).strftime(fmt),
        "tee": "simulated",
        "measurement": "ab" * 48,
        "hpkeKeySha256": hashlib.sha256(public).hexdigest(),
        "signingKeySha256": hashlib.sha256(signing).hexdigest(),
        "hpkePublicKey": base64.b64encode(public).decode(),
        "signingPublicKey": base64.b64encode(signing).decode(),
    }


@pytest.fixture(scope="module")
def keys() -> tuple[Any, bytes, ed25519.Ed25519PrivateKey]:
    private, public = hpke.generate_key_pair()
    return private, public, ed25519.Ed25519PrivateKey.generate()


def test_the_gateway_loads_one_route_per_mode_on_the_attested_agent(
    tmp_path: Path, keys: tuple[Any, bytes, ed25519.Ed25519PrivateKey]
) -> None:
    _, public, signer = keys
    path = tmp_path / "gateway.yaml"
    path.write_text(modes.gateway_config(lease(public, signer.public_key().public_bytes_raw())))
    config = file_source.load(path)  # the gateway's own loader: the schema is the real one
    sealing = {r.spec.model: r.spec.sealing for r in config.inventory.routes}
    assert sealing == {"sim-plain": "off", "sim-gateway": "gateway", "sim-client": "required"}
    [endpoint] = config.inventory.endpoints["default/sim"]
    assert endpoint.hpke_public == public  # the published key matches its attested hash
    assert endpoint.tee == "simulated"
    assert config.settings.ledger == f"sqlite:///{tmp_path / 'ledger.db'}"  # where it is read


def test_each_mode_checks_what_its_answers_must_hold() -> None:
    plain, gateway, client_ = modes.MODES
    assert (modes.expect(plain, False), modes.expect(gateway, True)) == ('"usage"', "[DONE]")
    assert modes.expect(client_, False) == modes.expect(client_, True) == "TR\x02 "
    assert modes.RECEIPT_HEADER.encode("latin-1") == frames.header(frames.FrameType.RECEIPT, 0)[:4]
    assert json.loads(modes.body("m", True, 16))["stream_options"] == {"include_usage": True}
    assert "stream" not in json.loads(modes.body("m", False, 16))
    assert json.loads(modes.body("m", True, 256))["max_tokens"] == 256
    assert modes.sealed_meta("m", False, 16) == {
        "path": "/v1/chat/completions", "model": "m", "stream": False, "max_tokens": 16,
        "receipt_timings": True,  # as the SDK's request_meta: the agent's timings in receipts
    }  # fmt: skip
    assert modes.SEALED == ("gateway", "client")


def test_three_kinds_short_streamed_and_long_each_with_two_scenarios() -> None:
    assert [(k.name, k.stream, k.max_tokens) for k in KINDS] == [
        ("non_streamed", False, 16), ("streamed", True, 16), ("streamed_long", True, 256),
    ]  # fmt: skip
    assert [s.name for s in load.SCENARIOS] == [  # the first four: the first results' names
        "moderate", "max", "streamed_moderate", "streamed_max",
        "streamed_long_moderate", "streamed_long_max",
    ]  # fmt: skip
    assert [(s.kind, s.connections, s.saturating) for s in load.scenarios([LONG])] == [
        (LONG, load.MODERATE_CONNECTIONS, False), (LONG, load.MAX_CONNECTIONS, True),
    ]  # fmt: skip
    assert SHORT.heading == "Non-streamed requests (max_tokens 16)"
    assert STREAMED.heading == "Streamed requests (max_tokens 16, usage included)"
    assert LONG.heading == "Long streamed answers (max_tokens 256, usage included)"
    assert LONG.label == "streamed-long"
    spec = load.load_for(modes.BY_NAME["plain"], load.SCENARIOS[-1], b"{}", "sk-x", 5)
    assert (spec.expect, spec.connections) == ("[DONE]", 64)


def test_kinds_are_selected_by_name_in_their_own_order() -> None:
    assert kinds.select("streamed_long, non_streamed") == (SHORT, LONG)
    assert kinds.select("streamed,streamed") == (STREAMED,)
    with pytest.raises(ValueError, match=r"unknown kind long \(known: non_streamed, streamed, "):
        kinds.select("streamed,long")
    with pytest.raises(ValueError, match="no kind given"):
        kinds.select(" , ")
    assert kinds.describe((LONG,)) == {
        "streamed_long": {
            "stream": True, "max_tokens": 256,
            "scenarios": ["streamed_long_moderate", "streamed_long_max"],
        }
    }  # fmt: skip
    assert kinds.measured({"kinds": kinds.describe((STREAMED,))}) == (STREAMED,)
    assert kinds.measured({}) == KINDS  # a document from before the kinds


def test_the_kinds_option_defaults_to_all_and_names_an_unknown_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["sealed.py", "--quick"])
    assert sealed.parse_args().kinds == KINDS
    monkeypatch.setattr(sys, "argv", ["sealed.py", "--kinds", "streamed_long"])
    assert sealed.parse_args().kinds == (LONG,)
    monkeypatch.setattr(sys, "argv", ["sealed.py", "--kinds", "streamed,bogus"])
    with pytest.raises(SystemExit) as exited:
        sealed.parse_args()
    assert exited.value.code == 2
    assert "argument --kinds: unknown kind bogus (known: " in capsys.readouterr().err


def test_listen_overflows_are_read_from_the_kernels_counters() -> None:
    found = load.listen_overflows()
    assert found is None or found >= 0


def test_the_pool_script_cycles_through_the_file_with_the_sealed_type(tmp_path: Path) -> None:
    pool = load.write_pool(tmp_path / "pool.txt", [b'{"a":1}', b"TR\x02\n\x00"])
    assert pool.read_bytes() == b'{"a":1}'.hex().encode() + b"\n545202" + b"0a00\n"
    spec = load.load_for(modes.BY_NAME["client"], load.SCENARIOS[1], b"7b7d", "sk-x", 5)
    assert spec.headers["Content-Type"] == frames.CONTENT_TYPE
    assert (spec.connections, spec.think_ms, spec.expect) == (64, 0, modes.RECEIPT_HEADER)
    text = load.script(spec, pool)
    assert f"for line in io.lines([==[{pool}]==]) do pool[#pool + 1] = unhex(line) end" in text
    assert "function request()" in text and "wrk.format(nil, nil, nil, pool[next_body])" in text
    assert text.startswith(wrk.lua_script(spec))  # gatewaybench's checks and summary kept
    plain = load.load_for(modes.BY_NAME["plain"], load.SCENARIOS[0], b"{}", "sk-x", 5)
    assert "Content-Type" not in plain.headers and plain.think_ms == load.THINK_MS
    with pytest.raises(procs.BenchError):
        load.write_pool(tmp_path / "bad.txt", [b""])


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_sends_each_pool_body_as_its_bytes_in_turn(tmp_path: Path) -> None:
    bodies = [b'{"a":1}', bytes(range(256)), b"TR\x02\x10\n\r\n"]
    pool = load.write_pool(tmp_path / "pool.txt", bodies)
    _Recorder.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = wrk.Load(path="/", body="", headers={}, connections=1, seconds=1, think_ms=100)
        (tmp_path / "load.lua").write_text(load.script(spec, pool))
        url = f"http://127.0.0.1:{server.server_address[1]}"
        argv = ["wrk", "-t1", "-c1", "-d1s", "-s", str(tmp_path / "load.lua"), url + "/"]
        subprocess.run(argv, capture_output=True, timeout=30, check=True)
    finally:
        server.shutdown()
    seen = _Recorder.bodies
    assert len(seen) >= 4
    first = bodies.index(seen[0])  # wrk calls request() once before it starts sending
    assert seen == [bodies[(first + i) % 3] for i in range(len(seen))]


class LocalGateway:
    """POST /v1/sessions answered by the SDK's enclave half, in-process: what a pool's
    session is opened through when no gateway runs."""

    def __init__(self, private: Any, public: bytes, signing_sha256: str) -> None:
        self.keys = private, public, signing_sha256
        self.sessions: dict[bytes, session.Session] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/sessions"
        hello = session.parse_hello(frames.decode_one(request.content).payload)
        welcome, opened = session.accept(hello, *self.keys, time.time())
        self.sessions[opened.id] = opened
        return httpx.Response(200, headers={"content-type": frames.CONTENT_TYPE}, content=welcome)


def local_enclave(
    keys: tuple[Any, bytes, ed25519.Ed25519PrivateKey],
) -> tuple[client.Enclave, LocalGateway]:
    private, public, signer = keys
    signing = signer.public_key().public_bytes_raw()
    side = LocalGateway(private, public, hashlib.sha256(signing).hexdigest())
    http = httpx.Client(transport=httpx.MockTransport(side))
    enclave = client.Enclave.from_lease(lease(public, signing), "http://gw", "sk-x", http)
    return enclave, side


def test_pool_bodies_are_requests_of_one_new_session_each_opening_in_the_enclave(
    keys: tuple[Any, bytes, ed25519.Ed25519PrivateKey],
) -> None:
    enclave, side = local_enclave(keys)
    pool = client.sealed_pool(enclave, "sim-client", LONG, 5)
    assert len(set(pool)) == 5 and len(side.sessions) == 1
    (opened,) = side.sessions.values()
    for raw in pool:
        frame = frames.decode_one(raw)
        assert frame.type == frames.FrameType.REQUEST
        meta, plain, _ = opened.open_request(frame.payload, time.time())
        assert json.loads(plain) == modes.chat_request("sim-client", True, 256)
        doc = json.loads(meta)
        assert (doc["stream"], doc["max_tokens"], doc["key_id"]) == (
            True, 256, enclave.hpke_key_sha256,
        )  # fmt: skip
    client.sealed_pool(enclave, "sim-client", LONG, 1)
    assert len(side.sessions) == 2  # each run's pool in a session of its own
    with pytest.raises(SealingError) as replayed:
        opened.open_request(frames.decode_one(pool[0]).payload, time.time())
    assert replayed.value.check == "session.replay"  # each body is taken once


def test_a_sealed_answer_opens_and_its_receipt_verifies_and_tampering_fails(
    keys: tuple[Any, bytes, ed25519.Ed25519PrivateKey],
) -> None:
    pieces = [b'{"choices":[{"message":{"content":"hi"}}],', b'"usage":{"completion_tokens":1}}']
    bench = client._Bench.start(pieces, 1)
    request, exchange = client.seal(bench.client, bench.enclave, "sim-client", SHORT)
    answer = bench.answer(request)
    opened = client.open_answer(
        answer, exchange, bench.client.receipt_key, bench.enclave, "sim-client", "bench"
    )
    assert opened.frames == pieces
    assert client.answer_text(opened.plaintext, False) == ("hi", 1, True)
    assert opened.receipt.hpke_key_sha256 == bench.enclave.hpke_key_sha256
    assert opened.receipt.output_tokens == 1
    request, exchange = client.seal(bench.client, bench.enclave, "sim-client", SHORT)
    answer = bench.answer(request)
    cut = answer[: answer.rindex(frames.header(frames.FrameType.RECEIPT, 0)[:4])]
    with pytest.raises(SealingError) as missing:
        client.open_answer(cut, exchange, bench.client.receipt_key, bench.enclave, "sim-client")
    assert missing.value.check == "receipt.missing"
    request, exchange = client.seal(bench.client, bench.enclave, "sim-client", SHORT)
    answer = bench.answer(request)
    with pytest.raises(SealingError) as wrong_key:  # another session's key
        client.open_answer(answer, exchange, bytes(32), bench.enclave, "sim-client")
    assert wrong_key.value.check == "receipt.mac"


def test_stream_text_is_the_deltas_and_usage_comes_from_the_usage_chunk() -> None:
    sse = (
        b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"b"}}]}\n\n'
        b'data: {"choices":[],"usage":{"completion_tokens":2}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert client.answer_text(sse, True) == ("ab", 2, True)
    assert client.answer_text(sse.replace(b"data: [DONE]", b""), True)[2] is False


def test_the_client_micro_benchmark_times_seal_open_and_verify() -> None:
    cost = client.client_cost("sim-client", LONG, [b"data: x\n\n", b""], 5, output_tokens=255)
    assert (cost["iterations"], cost["frames"], cost["answer_bytes"]) == (5, 2, 9)
    assert cost["output_tokens"] == 255
    for phase in ("seal", "open", "verify", "total", "handshake"):
        assert cost[phase]["median_us"] > 0 and cost[phase]["p99_us"] >= cost[phase]["median_us"]
    assert cost["total"]["median_us"] >= cost["seal"]["median_us"]
    assert cost["requests_per_core_s"] > 0
    with pytest.raises(procs.BenchError):
        client.client_cost("m", SHORT, [], 1, output_tokens=16)


def test_the_client_cost_replays_each_kinds_probe_with_its_token_count() -> None:
    probes = {
        "client/streamed": {"frames": [b"data: x\n\n"], "receipt_output_tokens": None},
        "client/streamed_long": {"frames": [b"a", b"b", b""], "receipt_output_tokens": 255},
    }
    cost = sealed.client_costs(probes, (STREAMED, LONG), 2)
    assert cost["streamed"]["output_tokens"] == 16  # no count in the probe: max_tokens
    assert (cost["streamed_long"]["output_tokens"], cost["streamed_long"]["frames"]) == (255, 3)


ROWS = [
    ("sim-plain", "ok", "", 100),
    ("sim-plain", "cancelled", "", 3),
    ("sim-gateway", "ok", "valid", 90),
    ("sim-gateway", "cancelled", "missing", 2),
    ("sim-client", "ok", "valid", 80),
    ("sim-client", "receipt_invalid", "invalid", 1),
]


def test_the_ledger_tally_counts_valid_receipts_and_problems() -> None:
    found = ledger.summary(
        ROWS,
        {
            "plain": ("sim-plain", 100, False),
            "gateway": ("sim-gateway", 90, True),
            "client": ("sim-client", 81, True),
        },
    )
    assert found["plain"] | {"by_outcome_and_receipt": None} == {
        "records": 103, "by_outcome_and_receipt": None, "cancelled": 3, "valid": 0,
        "flagged": {}, "completed_by_clients": 100, "problems": 0,
    }  # fmt: skip
    assert found["gateway"]["by_outcome_and_receipt"] == {"cancelled/missing": 2, "ok/valid": 90}
    assert (found["gateway"]["valid"], found["gateway"]["problems"]) == (90, 0)
    assert found["client"]["flagged"] == {"invalid": 1}
    assert found["client"]["problems"] == 1 + 1  # one flagged, one answered without `valid`
    assert ledger.tally(ROWS, "sim-plain", 104, sealed=False)["problems"] == 4


def test_the_ledger_is_read_from_the_gateways_own_schema(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        for n, (model, outcome, status, _) in enumerate(ROWS):
            db.execute(
                "INSERT INTO ledger_usage VALUES "
                "(?, 'h', 'a', ?, 'p', 'e', 'u', 1, 1, 1, 1, 0, 1.0, NULL, 200, ?, 0, 0, 0, 0, ?, "
                "NULL, NULL, '', NULL)",
                (f"r{n}", model, outcome, status),
            )
    assert sorted(ledger.read(path)) == sorted((m, o, s, 1) for m, o, s, _ in ROWS)
    with pytest.raises(procs.BenchError, match="no ledger"):
        ledger.read(tmp_path / "missing.db")


def run(rps: float, p50: float, **changes: Any) -> dict[str, Any]:
    base = {
        "requests": int(rps * 10), "seconds": 10.0, "wall_s": 10.0, "rps": rps,
        "p50_ms": p50, "p90_ms": p50 * 2, "p99_ms": p50 * 4, "mean_ms": p50, "max_ms": p50 * 9,
        "non200": 0, "bad_body": 0, "socket_errors": 0, "errors": 0, "first_bad": "",
        "connections": 64, "think_ms": 0,
        "cpu_s": {"gateway": 5.0, "agent": 6.0, "engine": 2.0},
        "core_busy_s": {"0": 5.2, "1": 9.9}, "listen_overflows": 0,
    }  # fmt: skip
    return base | changes


def test_rounds_merge_into_one_row_with_cpu_per_request_and_the_bottleneck() -> None:
    second = run(500, 4.0, errors=2, first_bad="502 x", listen_overflows=3)
    row = stats.merge([run(1000, 2.0), second], CORES)
    assert (row["requests"], row["seconds"], row["rps"]) == (15000, 20.0, 750.0)
    assert (row["p50_ms"], row["p99_ms"], row["max_ms"]) == (3.0, 12.0, 36.0)
    assert (row["errors"], row["first_bad"], row["listen_overflows"]) == (2, "502 x", 3)
    assert stats.merge([run(1, 1, listen_overflows=None)], CORES)["listen_overflows"] is None
    assert row["cpu_util"] == {"gateway": 0.5, "agent": 0.6, "engine": 0.2}
    assert row["cpu_ms_per_request"]["gateway"] == pytest.approx(10 / 15, abs=1e-4)
    assert row["core_busy"] == {"0": 0.52, "1": 0.99}
    assert row["requests_per_gateway_cpu_s"] == 1500.0
    rest = (19.8 - 16) * 1000 / 15000
    assert row["load_core_rest_ms_per_request"] == pytest.approx(rest, abs=1e-4)
    assert row["bottleneck"] == "core 1 (agent + engine + wrk)"
    assert [r["rps"] for r in row["by_round"]] == [1000, 500]
    median = stats.merge([run(1000, 2.0), run(400, 9.0), run(1100, 2.2)], CORES)
    assert (median["rps"], median["p50_ms"]) == (1000, 2.2)  # one disturbed round: no change
    with pytest.raises(ValueError):
        stats.merge([], CORES)


@pytest.mark.parametrize(
    ("gateway", "busy", "expected"),
    [
        (0.95, {"0": 0.96, "1": 0.5}, "gateway (core 0)"),
        (0.5, {"0": 0.99, "1": 0.5}, "core 0 (gateway + other processes)"),
        (0.95, {"0": 0.99, "1": 0.97}, "gateway (core 0) and core 1 (agent + engine + wrk)"),
        (0.3, {"0": 0.3, "1": 0.5}, "neither core saturated"),
    ],
)
def test_the_bottleneck_is_the_full_core(
    gateway: float, busy: dict[str, float], expected: str
) -> None:
    assert (
        stats.bottleneck({"cpu_util": {"gateway": gateway}, "core_busy": busy}, CORES) == expected
    )
    assert stats.bottleneck({}, (None, None)) == "neither core saturated"


def results() -> dict[str, dict[str, Any]]:
    def mode(rps: float, p50: float, gateway_cpu: float) -> dict[str, Any]:
        cpu = {"gateway": gateway_cpu, "agent": 6.0, "engine": 2.0}
        return {
            s.name: stats.merge([run(rps, p50, cpu_s=cpu, think_ms=s.think_ms)], CORES)
            for s in load.SCENARIOS
        }

    return {
        "plain": mode(1000, 2.0, 4.0),
        "gateway": mode(950, 2.5, 4.0),
        "client": mode(500, 3.0, 8.0),
    }


OPS = {
    "x25519_keygen": 30.0, "x25519_exchange": 30.0, "ed25519_sign": 30.0,
    "ed25519_verify": 100.0, "hmac_sha256_receipt": 2.0, "aes128gcm_per_kib": 0.1,
    "sha256_per_kib": 0.5,
}  # fmt: skip


def document(found: dict[str, Any], measured: tuple[kinds.Kind, ...] = KINDS) -> dict[str, Any]:
    probes = {
        f"{mode.name}/{kind.name}": {"completion_tokens": min(kind.max_tokens, 255)}
        for mode in modes.MODES
        for kind in measured
    }
    doc: dict[str, Any] = {
        "when": "2026-01-01T00:00:00+00:00",
        "profile": "quick",
        "command": "python3 -m uv run --frozen python e2e/bench/sealed.py --quick",
        "machine": {
            "cpu_model": "AMD EPYC", "cpus": 2, "platform": "Linux", "python": "3.11.7",
            "load_before": "0.90 0.5 0.5", "load_after": "1.00",
        },
        "versions": {"teeroute": "abc1234-dirty", "wrk": "4.1.0"},
        "layout": "core 0: the gateway alone",
        "cores": {"gateway": 0, "load": 1},
        "kinds": kinds.describe(measured),
        "setup_notes": report.setup_notes(
            {"run_s": 8, "rounds": 1, "warmup_s": 2}, 2000, measured
        ),
        "results": found,
        "comparison": stats.compare(found, modes.SEALED, measured),
        "probes": probes,
        "ledger": ledger.summary(
            ROWS,
            {
                "plain": ("sim-plain", 100, False),
                "gateway": ("sim-gateway", 90, True),
                "client": ("sim-client", 81, True),
            },
        ),
        "client_cost": {
            kind.name: client.client_cost(
                "sim-client", kind, [b"{}"], 3, output_tokens=min(kind.max_tokens, 255)
            )
            for kind in measured if kind is not STREAMED
        },
    }  # fmt: skip
    doc["floor"] = sealed.floor_of(OPS, doc, measured)
    doc["checks"] = stats.verdicts(doc)
    doc["notes"] = report.observations(doc, quick=True)
    return doc


def test_sealed_modes_are_compared_with_plain() -> None:
    compared = stats.compare(results(), modes.SEALED)
    gateway, client_ = compared["gateway"]["non_streamed"], compared["client"]["streamed"]
    assert (gateway["added_p50_ms"], gateway["added_p99_ms"]) == (0.5, 2.0)
    assert gateway["throughput_ratio"] == 0.95
    assert gateway["gateway_capacity_ratio"] == 0.95  # same CPU, fewer requests
    assert client_["throughput_ratio"] == 0.5
    assert client_["gateway_capacity_ratio"] == 0.25
    assert client_["added_gateway_cpu_ms_per_request"] == pytest.approx(1.2, abs=1e-3)
    assert client_["added_agent_cpu_ms_per_request"] == pytest.approx(0.6, abs=1e-3)
    assert stats.compare({}, modes.SEALED)["gateway"]["streamed"]["throughput_ratio"] is None
    assert compared["client"]["streamed_long"]["throughput_ratio"] == 0.5
    assert list(stats.compare(results(), modes.SEALED, [LONG])["gateway"]) == ["streamed_long"]


def test_verdicts_name_each_goal_per_mode_with_its_value() -> None:
    doc = document(results())
    rows = {(r["goal"][:40], r["mode"]): r for r in doc["checks"]}
    ratio = "sealed / plain max req/s ≥ 0.9x, non-str"
    assert (rows[(ratio, "gateway")]["value"], rows[(ratio, "gateway")]["pass"]) == (0.95, True)
    assert rows[(ratio, "client")]["pass"] is False
    assert (ratio, "plain") not in rows
    receipts_ = "every answered sealed request has a ledg"
    assert rows[(receipts_, "gateway")]["pass"] is True
    assert (rows[(receipts_, "client")]["value"], rows[(receipts_, "client")]["pass"]) == (2, False)
    assert rows[("every request answered 200 and checked", "plain")]["pass"] is True
    assert {r["pass"] for r in stats.verdicts({"results": {}})} == {None}
    long_ = "gateway's own capacity (req per gateway CPU-s) sealed / plain ≥ 0.9x, streamed-long"
    assert [(r["mode"], r["value"]) for r in doc["checks"] if r["goal"] == long_] == [
        ("gateway", 0.95), ("client", 0.25),
    ]  # fmt: skip


def test_a_run_of_some_kinds_has_the_goals_and_tables_of_those_only() -> None:
    doc = document(results(), (LONG,))
    goals = [r["goal"] for r in doc["checks"] if r["mode"] == "client"]
    assert [g for g in goals if "0.9x" in g] == [
        "sealed / plain max req/s ≥ 0.9x, streamed-long (end to end)",
        "gateway's own capacity (req per gateway CPU-s) sealed / plain ≥ 0.9x, streamed-long",
    ]
    assert None not in {r["pass"] for r in doc["checks"]}  # a complete run: exit 0 possible
    text = report.render(doc)
    assert [line for line in text.splitlines() if line.startswith("## ")][:2] == [
        "## Long streamed answers (max_tokens 256, usage included)",
        "## Receipts in the gateway's ledger",
    ]
    assert "| client's work | streamed-long |" in text
    assert "max_tokens per kind: streamed-long 256 with usage" in text


def test_report_has_a_table_per_kind_the_ledger_client_cost_goals_and_layout(
    tmp_path: Path,
) -> None:
    doc = document(results())
    text = report.render(doc)
    lines = text.splitlines()
    head = "| metric | plain hop (sealing off) | gateway-sealed | client-sealed (passed through) |"
    assert lines.count(head) == 3
    assert "On this machine: X25519 key pair 30.00 µs, X25519 exchange 30.00 µs" in text
    assert [line for line in lines if line.startswith("## ")][:3] == [
        "## Non-streamed requests (max_tokens 16)",
        "## Streamed requests (max_tokens 16, usage included)",
        "## Long streamed answers (max_tokens 256, usage included)",
    ]
    table = lines.index("## Long streamed answers (max_tokens 256, usage included)")
    assert (
        lines[table + 4] == "| completion tokens per answer (the probe's usage) | 255 | 255 | 255 |"
    )
    expected = [
        "| **sealed / plain max req/s** | — | 0.95x | 0.50x |",
        "| **added p50 / p99 ms** (vs plain, moderate load) | — | +0.50 / +2.00 | +1.00 / +4.00 |",
        "| gateway-sealed | 92 | 90 | 90 | 2 | 0 | `cancelled/missing` 2, `ok/valid` 90 |",
        "| client's work | non-streamed | streamed-long |",
        "| completion tokens per answer (in the receipt) | 16 | 255 |",
        "| sealed / plain max req/s ≥ 0.9x, streamed-long (end to end) | gateway | "
        "**pass** (0.95 x) |",
        "| sealed / plain max req/s ≥ 0.9x, non-streamed (end to end) | client | "
        "**miss** (0.50 x) |",
        "- layout: core 0: the gateway alone",
        "| client | streamed-long | gateway's capacity | 44 | 1.6 | 2.0 | 0 | +1200 | within "
        "reach only if all else sealing adds stays under 41 µs |",  # a root per 64 receipts
        "| client | streamed-long | end to end | 110 | 0.5 | 4.0 | 0 | +990 | within reach only "
        "if all else sealing adds stays under 106 µs |",  # two tags: gateway's and client's
    ]  # fmt: skip
    assert [line for line in expected if line not in lines] == []
    assert "| max load: limited by | core 1 (agent + engine + wrk) | " in text
    assert "teeroute abc1234-dirty" in text
    said = " ".join(doc["notes"])
    assert "client / non-streamed: the max load was limited by core 1" in said
    assert "client / streamed-long: the max load was limited by core 1" in said
    assert "max_tokens per kind: non-streamed 16, streamed 16 with usage, streamed-long 256" in text
    assert "mostly the agent's cost" in said
    assert "load average 0.90 before the run" in said
    assert "uncommitted changes" in said and "quick profile" in said
    json_path, md_path = report.write(tmp_path, doc)
    assert json.loads(json_path.read_text())["results"]["plain"]["max"]["rps"] == 1000
    assert md_path.read_text() == text
    doc["results"]["plain"]["max"] |= {"listen_overflows": 4, "errors": 1, "first_bad": "502 x"}
    said = " ".join(report.observations(doc, quick=False))
    assert "plain / max: 4 connection attempts were dropped by a full listen queue" in said
    assert "**plain / max: 1 errors** of 10000 requests (first: 502 x)" in said
    assert "quick profile" not in said


def test_the_floor_counts_each_sides_public_key_and_per_byte_work() -> None:
    assert floor.ROOT_BATCH == 64  # one root signature per 64 receipts
    sealing = floor.floors(OPS, "gateway", 10 * 1024)
    assert sealing["gateway"] == {
        "public_key": 100 / 64,
        "mac": 2.0,
        "per_byte": pytest.approx(6.0),
    }
    assert sealing["agent"] == {"public_key": 30 / 64, "mac": 2.0, "per_byte": pytest.approx(6.0)}
    passing = floor.floors(OPS, "client", 10 * 1024)  # chunks hashed, not opened
    assert passing["gateway"] == {
        "public_key": 100 / 64,
        "mac": 2.0,
        "per_byte": pytest.approx(5.0),
    }
    assert passing["agent"] == sealing["agent"] | {"mac": 4.0}  # the client's tag too


def test_the_budget_is_what_keeps_nine_tenths_of_plains_rate() -> None:
    assert floor.budget_us(0.9) == pytest.approx(100.0)
    assert floor.verdict(100, 101, 101).startswith("out of reach: the public-key work alone")
    assert floor.verdict(100, 90, 101) == "out of reach: the floor is over the budget"
    assert floor.verdict(100, 60, 70) == (
        "within reach only if all else sealing adds stays under 30 µs"
    )


def limited_row(gateway: float, agent: float, limit: str) -> dict[str, Any]:
    return {
        "cpu_ms_per_request": {"gateway": gateway, "agent": agent, "engine": 1.0},
        "load_core_rest_ms_per_request": 0.3,
        "bottleneck": limit,
    }


def test_reach_judges_the_gateway_and_the_core_that_limited_plain() -> None:
    load_core, gateway_core = "core 1 (agent + engine + wrk)", "gateway (core 0)"
    found = floor.reach(
        OPS,
        {
            "plain": {
                LONG.maximum: limited_row(0.9, 0.5, load_core),
                STREAMED.maximum: limited_row(0.9, 0.5, gateway_core),
            },
            "client": {LONG.maximum: limited_row(1.2, 1.0, load_core)},
        },
        {LONG.name: 10 * 1024, STREAMED.name: 1024, SHORT.name: 100},
        ("gateway", "client"),
        (SHORT, STREAMED, LONG),
    )
    long_ = found["client"][LONG.name]
    assert long_["gateway"] == {
        "budget_us": 100.0, "public_key_us": 1.6, "mac_us": 2.0, "per_byte_us": 5.0,
        "floor_us": 8.6, "added_us": 300.0,
        "verdict": "within reach only if all else sealing adds stays under 91 µs",
    }  # fmt: skip
    end = long_["end_to_end"]  # plain's load core: agent 0.5 + engine 1.0 + the rest 0.3 ms
    assert (end["budget_us"], end["floor_us"], end["added_us"]) == (200.0, 10.5, 500.0)
    assert end["verdict"].endswith("stays under 190 µs") and end["limited_by"] == load_core
    assert found["gateway"][LONG.name]["gateway"]["added_us"] is None  # not measured
    streamed = found["client"][STREAMED.name]  # plain limited by the gateway: one side
    assert streamed["end_to_end"] == streamed["gateway"] | {"limited_by": gateway_core}
    assert SHORT.name not in found["client"]  # no plain numbers for it


def test_the_primitives_are_timed_per_operation() -> None:
    ops = floor.measure(2)
    assert list(ops) == list(floor.OPS) and min(ops.values()) > 0
    assert ops["ed25519_verify"] > ops["aes128gcm_per_kib"]  # one signature vs one KiB


def test_profiles_take_about_three_and_fourteen_minutes() -> None:
    assert 150 <= sealed.expected_seconds(sealed.QUICK) + 20 <= 210
    assert 780 <= sealed.expected_seconds(sealed.FULL) + 20 <= 870
    assert sealed.expected_seconds(sealed.QUICK, (LONG,)) == 3 * 2 * 8 + 3 * 2  # --kinds
    custom = sealed.profile(True, {"run_s": 1})
    assert (custom.name, custom.run_s, custom.rounds) == ("quick, custom", 1, 1)
    assert sealed.profile(False, {}) is sealed.FULL


@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_a_one_second_run_measures_every_mode_and_every_receipt_is_valid(tmp_path: Path) -> None:
    argv = [sys.executable, str(BENCH / "sealed.py"), "--quick", "--seconds", "1", "--warmup"]
    argv += ["1", "--cost-iterations", "10", "--out", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "sealed.json").read_text())
    assert doc["profile"] == "quick, custom"
    for mode in ("plain", "gateway", "client"):
        for scenario in load.SCENARIOS:
            part = doc["results"][mode][scenario.name]
            assert part["requests"] > 0 and part["errors"] == 0, (mode, scenario, part)
    assert doc["kinds"] == kinds.describe(KINDS)
    for mode in ("gateway", "client"):
        assert doc["ledger"][mode]["valid"] >= doc["ledger"][mode]["completed_by_clients"] > 0
        assert doc["probes"][f"{mode}/streamed"]["receipt_status"] == "valid"
        assert doc["probes"][f"{mode}/streamed_long"]["receipt_status"] == "valid"
    assert doc["probes"]["plain/streamed_long"]["completion_tokens"] == 255  # the natural length
    assert doc["client_cost"]["streamed_long"]["output_tokens"] == 255
    assert doc["comparison"]["client"]["streamed"]["throughput_ratio"] > 0
    assert doc["comparison"]["client"]["streamed_long"]["throughput_ratio"] > 0
    assert list(doc["floor"]["primitives"]) == list(floor.OPS)
    assert doc["floor"]["reach"]["client"]["streamed_long"]["gateway"]["floor_us"] > 0
    assert (tmp_path / "sealed.md").read_text().startswith("# Sealed-mode benchmark")
