"""Benchmark: sealed against plain throughput and added latency through the same gateway.

    python3 -m uv run --frozen python e2e/bench/sealed.py [--quick] [--kinds A,B]
        [--out DIR] [--seconds N] [--warmup N] [--rounds N] [--cost-iterations N]
        (the last four override the profile)
    python3 -m uv run --frozen python e2e/bench/sealed.py --paced [--streams 64,128]
        [--tokens-per-s R] [--ttft-ms T] [--seconds N] [--rounds N] [--modes A,B] [--out DIR]

Starts, on loopback, the engine simulator (unpaced), the enclave agent on the simulated TEE
in front of it (its evidence verified, its keys written as the pool's lease) and one gateway
from a file config with three Routes on that pool: `sealing: off` (plain hop), `gateway` (the
gateway seals plain requests to the enclave and opens the answers) and `required` (requests
sealed by the client, passed through unopened). Each mode is probed end to end, then loaded
with wrk with each kind of request (`sealedbench/kinds.py`; `--kinds` picks some, default all):
non-streamed and streamed (max_tokens 16), and long streamed answers (max_tokens 256: 255
tokens each, as the streams of e2e/bench/gateway.py). Per kind: latency added at moderate
load (p50/p99), max requests/s, CPU per request of the gateway, the agent and the engine, and
the sealed / plain ratios (target: at least 0.9x). Afterwards the gateway's ledger must hold a
`valid` receipt for every answered sealed request. The client's own sealing cost is measured
apart, per kind (wrk sends bodies sealed just before each run, each once: the agent refuses
replays), and so are the cryptographic primitives a sealed request cannot do without, to
show how far 0.9x can be reached at all (`sealedbench/floor.py`). The gateway runs alone on
core 0; the agent, the engine, wrk and this harness share core 1. Writes sealed.json and
sealed.md; with the three kinds the quick profile takes about 3 minutes, the default about
15 (each kind about a third). The helpers live in `sealedbench/` (and `gatewaybench/`).

`--paced` runs the paced-engine scenario instead (`sealedbench/paced.py`): the engine paced
at R tokens/s per stream, one SSE event per token; N concurrent streams (each `--streams`
value) of 255-token answers to a 200-token prompt through the three modes, in turn; per mode
tok/s and CPU µs per streamed token of the gateway and of the agent, from a measured window
with all N in flight. Same layout (gateway alone on core 0). Writes sealed-paced.json and
sealed-paced.md; the defaults take about 6 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

import uvloop
from gatewaybench import host, targets
from gatewaybench.procs import BenchError, Fleet, Service, free_port, wait_ready
from sealedbench import (
    client,
    floor,
    kinds,
    ledger,
    load,
    miner,
    modes,
    paced,
    pacedreport,
    report,
    stats,
    streams,
)
from sealedbench.kinds import KINDS, Kind
from sealedbench.modes import MODES, Mode

from teeroute_gateway import gateway_key

ROOT = Path(__file__).resolve().parents[2]
LEASE_VALID_FOR = dt.timedelta(hours=24)
WARMUP_CONNECTIONS = load.MAX_CONNECTIONS  # fills the gateway's pool of agent connections


@dataclass(frozen=True)
class Profile:
    name: str
    warmup_s: int
    run_s: int
    rounds: int
    cost_iterations: int


FULL = Profile("full", 5, 14, 3, 2000)
QUICK = Profile("quick", 2, 8, 1, 300)
PACED = paced.Paced(streams=(64, 128), tokens_per_s=32, ttft_ms=50, seconds=15, rounds=2)
PACED_QUICK = paced.Paced(streams=(64,), tokens_per_s=32, ttft_ms=50, seconds=8, rounds=1)


def streams_arg(text: str) -> tuple[int, ...]:
    """`--streams 64,128`: positive counts."""
    try:
        found = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        found = ()
    if not found or min(found) < 1:
        raise argparse.ArgumentTypeError(f"not a list of stream counts: {text!r}")
    return found


def modes_arg(text: str) -> tuple[Mode, ...]:
    """`--modes plain,gateway`: in the order of MODES; argparse says which name is unknown."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    if unknown := names - set(modes.BY_NAME):
        raise argparse.ArgumentTypeError(f"no mode {', '.join(sorted(unknown))}")
    if not names:
        raise argparse.ArgumentTypeError("no mode given")
    return tuple(mode for mode in MODES if mode.name in names)


def kinds_arg(text: str) -> tuple[Kind, ...]:
    """`--kinds a,b`: argparse says which name is unknown."""
    try:
        return kinds.select(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about 3 minutes)")
    parser.add_argument(
        "--kinds",
        type=kinds_arg,
        default=KINDS,
        metavar="A,B",
        help=f"the kinds of request to measure (default: all: {','.join(kinds.BY_NAME)})",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "e2e" / "bench" / "results")
    parser.add_argument("--seconds", type=int, help="each measured run (quick 8, default 14)")
    parser.add_argument("--warmup", type=int, help="warm-up per mode and kind (quick 2, 5)")
    parser.add_argument("--rounds", type=int, help="rounds of every run (quick 1, default 3)")
    parser.add_argument("--cost-iterations", type=int, help="client micro-benchmark (300, 2000)")
    parser.add_argument("--paced", action="store_true", help="the paced-engine scenario instead")
    parser.add_argument("--streams", type=streams_arg, help="--paced: concurrent streams (64,128)")
    parser.add_argument("--tokens-per-s", type=float, help="--paced: per stream (default 32)")
    parser.add_argument("--ttft-ms", type=float, help="--paced: time to first token (50)")
    parser.add_argument(
        "--modes", type=modes_arg, default=MODES, metavar="A,B", help="--paced: modes (all)"
    )
    args = parser.parse_args()
    if args.paced:
        args.settings = paced_settings(args, parser)
        return args
    overrides = {
        "run_s": args.seconds,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "cost_iterations": args.cost_iterations,
    }
    if any(v is not None and v < 1 for v in overrides.values()):
        parser.error("counts and durations must be at least 1")
    args.profile = profile(args.quick, {k: v for k, v in overrides.items() if v is not None})
    return args


def paced_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> paced.Paced:
    base = PACED_QUICK if args.quick else PACED
    given = {
        "streams": args.streams,
        "tokens_per_s": args.tokens_per_s,
        "ttft_ms": args.ttft_ms,
        "seconds": args.seconds,
        "rounds": args.rounds,
    }
    chosen = replace(base, **{k: v for k, v in given.items() if v is not None})
    if chosen.tokens_per_s <= 0 or chosen.ttft_ms < 0 or chosen.seconds < 1 or chosen.rounds < 1:
        parser.error(
            "--paced needs --tokens-per-s > 0, --ttft-ms >= 0, --seconds and --rounds >= 1"
        )
    return chosen


def profile(quick: bool, overrides: dict[str, int]) -> Profile:
    base = QUICK if quick else FULL
    if not overrides:
        return base
    return replace(base, name=f"{base.name}, custom", **overrides)


def expected_seconds(p: Profile, measured: tuple[Kind, ...] = KINDS) -> int:
    """The load's length (setup, probes and the client's cost add some 20 s, and sealing each
    client-sealed run's bodies about a third of that run's length)."""
    runs = p.rounds * len(load.scenarios(measured)) * len(MODES)
    return runs * p.run_s + len(MODES) * len(measured) * p.warmup_s


def plan_cores() -> tuple[int | None, int | None, str]:
    """(core of the gateway, core of agent + engine + wrk + harness, how it was said)."""
    cores = host.two_cores()
    if isinstance(cores, str):
        return None, None, cores
    gateway, rest = cores
    said = (
        f"core {gateway}: the gateway alone (`taskset -c {gateway}`); core {rest}: the enclave "
        f"agent, the engine simulator, wrk (1 thread) and this harness (`taskset -c {rest}`)"
    )
    return gateway, rest, said


def versions() -> dict[str, str]:
    commit, dirty = host.commit(ROOT)
    return {
        "teeroute": f"{commit}{'-dirty' if dirty else ''}",
        "uvicorn": version("uvicorn"),
        "uvloop": version("uvloop"),
        "httptools": version("httptools"),
        "cryptography": version("cryptography"),
        "wrk": host.wrk_version(),
    }


def start_gateway(
    fleet: Fleet, workdir: Path, config: str, core: int | None
) -> tuple[Service, str, str]:
    config_file = workdir / "gateway.yaml"
    config_file.write_text(config)
    key = targets.create_key(config_file)
    port = free_port()
    argv = [*targets.teeroute_cli(), "gateway", "serve", "--config", str(config_file)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    service = fleet.start("gateway", argv, core=core, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    wait_ready(service, url + "/readyz", targets.GATEWAY_START_TIMEOUT_S)
    return service, url, key


def probe_all(
    url: str, key: str, enclave: client.Enclave, measured: tuple[Kind, ...]
) -> dict[str, Any]:
    """Each mode and kind once, end to end; the sealed ones must read the same text as plain's
    of the same kind and have a `valid` receipt in the ledger (`GET /v1/generation`)."""
    found: dict[str, Any] = {}
    for mode in MODES:
        for kind in measured:
            where = f"{mode.name}/{kind.name}"
            answer = client.probe(url, key, mode, kind, enclave)
            baseline = found.get(f"plain/{kind.name}")
            if baseline and answer["text"] != baseline["text"]:
                raise BenchError(f"{where}: another answer than plain's")
            if mode.name in modes.SEALED:
                answer["receipt_status"] = client.receipt_status(url, key, answer["request_id"])
                if answer["receipt_status"] != "valid":
                    raise BenchError(f"{where}: receipt {answer['receipt_status']!r}")
            found[where] = answer
    return found


def client_costs(
    probes: dict[str, Any], measured: tuple[Kind, ...], iterations: int
) -> dict[str, Any]:
    """The client's own cost per kind, replaying the frames of that kind's client-sealed probe
    with a receipt counting its completion tokens."""
    found = {}
    for kind in measured:
        probe = probes[f"client/{kind.name}"]
        tokens = probe.get("receipt_output_tokens") or probe.get("completion_tokens")
        found[kind.name] = client.client_cost(
            modes.BY_NAME["client"].model,
            kind,
            probe["frames"],
            iterations,
            output_tokens=tokens or kind.max_tokens,
        )
    return found


def pool_file(
    workdir: Path, enclave: client.Enclave, mode: Mode, kind: Kind, seconds: int
) -> tuple[Path, int]:
    """The bodies of one run and how many: the plain body once, or enough client-sealed ones,
    sealed now, for each request of the run to be new to the agent."""
    size = client.pool_size(seconds) if mode.client_sealed else 1
    bodies = (
        client.sealed_pool(enclave, mode.model, kind, size)
        if mode.client_sealed
        else [modes.body(mode.model, kind.stream, kind.max_tokens)]
    )
    return load.write_pool(workdir / f"pool-{mode.name}-{kind.name}.txt", bodies), size


def measure_all(
    url: str,
    key: str,
    enclave: client.Enclave,
    services: dict[str, Service],
    args: argparse.Namespace,
    work: Path,
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, int]]:
    """Warm-ups, then every scenario with the modes in turn (reversed in odd rounds).
    Returns the runs and, per mode, the requests wrk saw answered 200 (warm-ups included)."""
    profile: Profile = args.profile
    measured: tuple[Kind, ...] = args.kinds
    scenarios = load.scenarios(measured)
    answered = {mode.name: 0 for mode in MODES}

    def one(mode: Mode, scenario: load.Scenario, seconds: int) -> dict[str, Any]:
        pool, size = pool_file(work, enclave, mode, scenario.kind, seconds)
        first = pool.read_bytes().split(b"\n", 1)[0]
        spec = load.load_for(mode, scenario, first, key, seconds)
        run = load.measure(url, spec, pool, work, args.load_core, services)
        if mode.client_sealed and run["requests"] > size:
            raise BenchError(
                f"wrk sent {run['requests']} requests from {size} sealed bodies: the agent "
                "refused the repeats; raise client.POOL_RATE"
            )
        answered[mode.name] += run["requests"] - run["non200"] - run["bad_body"]
        return run

    for mode in MODES:
        for kind in measured:
            one(mode, load.Scenario("warmup", kind, WARMUP_CONNECTIONS, 0), profile.warmup_s)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        m.name: {s.name: [] for s in scenarios} for m in MODES
    }
    for round_ in range(profile.rounds):
        order = MODES if round_ % 2 == 0 else tuple(reversed(MODES))
        for scenario in scenarios:
            for mode in order:
                run = one(mode, scenario, profile.run_s)
                runs[mode.name][scenario.name].append(run)
                print(
                    f"  round {round_ + 1} {scenario.name:22} {mode.name:8} "
                    f"{run['rps']:7.0f} req/s  p50 {run['p50_ms']:6.2f} ms  "
                    f"p99 {run['p99_ms']:6.2f} ms  errors {run['errors']}",
                    flush=True,
                )
    return runs, answered


def start_stack(
    fleet: Fleet, work: Path, engine_url: str, args: argparse.Namespace
) -> tuple[Service, dict[str, Any], Service, str, str]:
    """The agent on the simulated TEE in front of the engine, its verified lease, and the
    gateway with one Route per mode: (agent, lease, gateway, its URL, an API key)."""
    chips = miner.chip_dir(work / "chips")
    # the agent answers only the gateway, whose key it pins (docs/sealed-mode.md section 8)
    signing = work / "gateway-key.pem"
    pinned = gateway_key.public_b64(gateway_key.create(signing))
    agent, agent_url = miner.start_agent(fleet, chips, engine_url, args.load_core, pinned)
    lease = miner.verified_lease(agent_url, chips, LEASE_VALID_FOR)
    gateway, url, key = start_gateway(
        fleet, work, modes.gateway_config(lease, str(signing)), args.target_core
    )
    return agent, lease, gateway, url, key


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    if reason := targets.gateway_unavailable():
        raise BenchError(reason)
    with Fleet(work) as fleet:
        engine = targets.start_simulator(fleet, args.load_core)
        agent, lease, gateway, url, key = start_stack(fleet, work, engine.url, args)
        print(f"engine, agent and gateway (pid {gateway.pid}) ready; probing", flush=True)
        enclave = client.Enclave.from_lease(lease, url, key)  # client sessions via the gateway
        probes = probe_all(url, key, enclave, args.kinds)
        print("measuring the client's own sealing cost", flush=True)
        cost = client_costs(probes, args.kinds, args.profile.cost_iterations)
        primitives = floor.measure(args.profile.cost_iterations // floor.BATCH)
        services = {"gateway": gateway, "agent": agent, "engine": engine.service}
        runs, answered = measure_all(url, key, enclave, services, args, work)
        fleet.stop(gateway)  # settles and closes the ledger: every record is in the file
        rows = ledger.read(work / "ledger.db")
    counted = {
        mode.name: (mode.model, answered[mode.name] + len(args.kinds), mode.name in modes.SEALED)
        for mode in MODES
    }  # the probes were answered too
    return {
        "runs": runs,
        "probes": {k: _probe_summary(v) for k, v in probes.items()},
        "client_cost": cost,
        "primitives": primitives,
        "ledger": ledger.summary(rows, counted),
        "lease": {k: lease[k] for k in ("tee", "hpkeKeySha256", "signingKeySha256")},
    }


def floor_of(
    primitives: dict[str, float], doc: dict[str, Any], measured: tuple[Kind, ...]
) -> dict[str, Any]:
    """The primitives timed in `run` and, per sealed mode and kind, how far 0.9x is."""
    sizes = {name: cost["answer_bytes"] for name, cost in doc["client_cost"].items()}
    return {
        "primitives": primitives,
        "reach": floor.reach(primitives, doc["results"], sizes, modes.SEALED, measured),
    }


def _probe_summary(probe: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in probe.items() if k not in ("frames", "text")}


def _terminate(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through Fleet, which stops every process


def start_paced_engine(
    fleet: Fleet, settings: paced.Paced, core: int | None
) -> tuple[Service, str]:
    port = free_port()
    argv = [sys.executable, "-m", "teeroute_engine_sim", "--port", str(port), "--workers", "1"]
    argv += ["--ttft-ms", f"{settings.ttft_ms:g}", "--tokens-per-s", f"{settings.tokens_per_s:g}"]
    service = fleet.start("engine", argv, core=core)
    url = f"http://127.0.0.1:{port}"
    wait_ready(service, url + "/health", 30)
    return service, url


def run_paced(
    args: argparse.Namespace, work: Path, answer: paced.Answer
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, dict[str, int]]]:
    """Every stream count through every mode in turn (reversed in odd rounds): the runs, and
    what the gateway's ledger metered per public model."""
    settings: paced.Paced = args.settings
    if reason := targets.gateway_unavailable():
        raise BenchError(reason)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        m.name: {str(n): [] for n in settings.streams} for m in args.modes
    }
    with Fleet(work) as fleet:
        engine, engine_url = start_paced_engine(fleet, settings, args.load_core)
        agent, lease, gateway, url, key = start_stack(fleet, work, engine_url, args)
        services = {"gateway": gateway, "agent": agent, "engine": engine}
        enclave = client.Enclave.from_lease(lease, url, key)  # client sessions via the gateway
        port = int(url.rsplit(":", 1)[1])
        print(f"paced engine, agent and gateway (pid {gateway.pid}) ready", flush=True)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            for round_ in range(settings.rounds):
                order = args.modes if round_ % 2 == 0 else tuple(reversed(args.modes))
                for count in settings.streams:
                    for mode in order:
                        target = streams.Target(
                            "127.0.0.1", port, key, mode, enclave,
                            answer.variant, answer.completion_tokens,
                        )  # fmt: skip
                        found = runner.run(streams.run(target, count, settings, services))
                        runs[mode.name][str(count)].append(found)
                        _said(round_, mode, found)
        fleet.stop(gateway)  # settles and closes the ledger: every record is in the file
        metered = ledger.read_tokens(work / "ledger.db", answer.completion_tokens)
    return runs, metered


def ledger_check(
    runs: dict[str, dict[str, list[dict[str, Any]]]], metered: dict[str, dict[str, int]]
) -> dict[str, Any]:
    """Per mode: what the gateway metered against what the clients checked, and the verdict."""
    found = {}
    for mode in (m for m in MODES if m.name in runs):
        parts = [r for by in runs[mode.name].values() for r in by]
        checked = sum(r["streams_checked"] for r in parts)
        tokens = sum(r["tokens_checked"] for r in parts)
        row = metered.get(mode.model)
        why = ledger.agrees(row, checked, tokens, mode.name in modes.SEALED)
        found[mode.name] = {"metered": row, "answers": checked, "tokens": tokens, "problem": why}
    return found


def _said(round_: int, mode: Mode, run: dict[str, Any]) -> None:
    tokens = max(run["tokens_in_window"], 1)
    cpu = {p: run["cpu_s"][p] * 1e6 / tokens for p in ("gateway", "agent")}
    print(
        f"  round {round_ + 1} {run['streams']:4} streams {mode.name:8} "
        f"{run['tokens_in_window'] / run['window_s']:8.0f} tok/s  gateway {cpu['gateway']:5.1f} "
        f"agent {cpu['agent']:5.1f} µs/token  broken {run['bad_streams']}",
        flush=True,
    )


def paced_layout(gateway: int | None, rest: int | None) -> str:
    if gateway is None or rest is None:
        return ""
    return (
        f"core {gateway}: the gateway alone (`taskset -c {gateway}`); core {rest}: the enclave "
        f"agent, the engine simulator and this harness with its clients (`taskset -c {rest}`)"
    )


def main_paced(args: argparse.Namespace, layout: str) -> int:
    """The paced scenario: run, write sealed-paced.json/.md; 0 when every answer was whole,
    every run counted tokens and the ledger metered what the clients checked."""
    answer = paced.longest_answer()
    facts = host.machine()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="teeroute-sealedbench-") as tmp:
        try:
            runs, metered = run_paced(args, Path(tmp), answer)
        except BenchError as exc:
            print(f"sealed benchmark (paced) failed: {exc}", file=sys.stderr)
            return 1
    facts["load_after"] = host.load_average()
    doc = paced_document(args, answer, runs, metered) | {"when": started, "machine": facts}
    doc["layout"] = layout
    doc["notes"] = pacedreport.observations(doc)
    json_path, md_path = pacedreport.write(args.out, doc)
    print(pacedreport.render(doc))
    print(f"wrote {json_path} and {md_path}")
    rows = [row for by in doc["results"].values() for row in by.values()]
    broken = sum(row["bad_streams"] for row in rows)
    empty = any(row["tokens_in_window"] == 0 for row in rows)
    disagree = any(row["problem"] for row in doc["ledger"].values())
    return 0 if not broken and not empty and not disagree else 1


def paced_document(
    args: argparse.Namespace,
    answer: paced.Answer,
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    metered: dict[str, dict[str, int]],
) -> dict[str, Any]:
    settings: paced.Paced = args.settings
    results = {
        mode: {n: paced.merge(parts, int(n), settings) for n, parts in by.items()}
        for mode, by in runs.items()
    }
    described = asdict(settings) | {
        "max_tokens": paced.MAX_TOKENS,
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "prompt_variant": answer.variant,
    }
    return {
        "benchmark": "sealed-paced",
        "command": "python3 -m uv run --frozen python e2e/bench/sealed.py "
        + " ".join(sys.argv[1:]),
        "versions": {k: v for k, v in versions().items() if k != "wrk"},
        "cores": {"gateway": args.target_core, "load": args.load_core},
        "settings": described,
        "setup_notes": pacedreport.setup_notes(described),
        "results": results,
        "ledger": ledger_check(runs, metered),
        "checks": paced.verdicts(results),
    }


def main() -> int:
    args = parse_args()
    args.target_core, args.load_core, layout = plan_cores()
    if args.load_core is not None:
        os.sched_setaffinity(0, {args.load_core})
    signal.signal(signal.SIGTERM, _terminate)
    if args.paced:
        return main_paced(args, paced_layout(args.target_core, args.load_core) or layout)
    facts = host.machine()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="teeroute-sealedbench-") as tmp:
        try:
            found = run(args, Path(tmp))
        except BenchError as exc:
            print(f"sealed benchmark failed: {exc}", file=sys.stderr)
            return 1
    facts["load_after"] = host.load_average()
    cores = (args.target_core, args.load_core)
    primitives = found.pop("primitives")
    results = {
        mode: {scenario: stats.merge(parts, cores) for scenario, parts in by.items()}
        for mode, by in found.pop("runs").items()
    }
    doc: dict[str, Any] = {
        "benchmark": "sealed",
        "when": started,
        "profile": args.profile.name,
        "command": "python3 -m uv run --frozen python e2e/bench/sealed.py "
        + " ".join(sys.argv[1:]),
        "machine": facts,
        "versions": versions(),
        "layout": layout,
        "cores": {"gateway": args.target_core, "load": args.load_core},
        "profile_settings": asdict(args.profile) | {"pool_rate": client.POOL_RATE},
        "kinds": kinds.describe(args.kinds),
        "setup_notes": report.setup_notes(asdict(args.profile), client.POOL_RATE, args.kinds),
        "results": results,
        "comparison": stats.compare(results, modes.SEALED, args.kinds),
        **found,
    }
    doc["floor"] = floor_of(primitives, doc, args.kinds)
    doc["checks"] = stats.verdicts(doc)
    doc["notes"] = report.observations(doc, args.quick)
    json_path, md_path = report.write(args.out, doc)
    print(report.render(doc))
    print(f"wrote {json_path} and {md_path}")
    complete = all(row["pass"] is not None for row in doc["checks"])
    errors = sum(stats.errors(r) for r in results.values())
    problems = sum(t["problems"] for t in doc["ledger"].values())
    return 0 if complete and not errors and not problems else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every started process was stopped", file=sys.stderr)
        sys.exit(130)
