"""Benchmark: the gateway through faults under load, and the books reconciled afterwards.

    python3 -m uv run python e2e/bench/faults.py [--kills 4] [--down-s 3] [--clients 16]
        [--backends sqlite,postgres] [--out e2e/bench/results]

For each ledger backend (a SQLite file; a throwaway PostgreSQL started here), one real gateway
process under load from `--clients` clients (whole and streamed requests in turn, engine
simulator upstream, rate limits in a real Redis) goes through, in order: `--kills` times
kill -9 and a restart on the same port; Redis stopped for `--down-s` and started again;
PostgreSQL (that backend only) stopped for `--down-s` and started again. Then the holds of the
killed gateways are left to expire and be reaped, and the ledger, read straight from the
database, is reconciled with what each client was answered (tests/gateway/faultload.py):
every answer delivered in full in the ledger exactly once and charged what the client was
told, the balance the credit less the charges, no hold left. Also: how long each fault took to
recover from (fault over -> next answer delivered), and the rows charged for answers whose
client never got the last bytes (the gateway died between the commit and the send).
Writes faults.json and faults.md. A few minutes in all.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.gateway import pg  # noqa: E402 - after the path
from tests.gateway.faultload import (  # noqa: E402
    Answer,
    Load,
    Restartable,
    read_books,
    reconcile,
    served_some,
    start_postgres_again,
    summary,
)
from tests.gateway.procs import create_key, engine, lease, write_config  # noqa: E402
from tests.gateway.redis_server import RedisServer, running_redis  # noqa: E402

from teeroute_gateway.ledger import to_nano  # noqa: E402

CREDIT = "100000"
HOLD_TTL_S = 3
BETWEEN = 60  # answers delivered between faults


@contextmanager
def ledger_for(backend: str, tmp: Path) -> Iterator[tuple[str, pg.PostgresServer | None]]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'ledger.db'}", None
        return
    with pg.postgres_server() as server:
        yield server.create_database("faults"), server


class Run:
    """One backend's run: the gateway, its servers, the load and what each fault took."""

    def __init__(self, gw: Restartable, redis: RedisServer, server: pg.PostgresServer | None):
        self.gw, self.redis, self.server = gw, redis, server
        self.restarted: list[pg.PostgresServer] = []
        self.faults: list[dict[str, Any]] = []

    async def fault(self, load: Load, kind: str, act: Callable[[], None]) -> None:
        await served_some(load, BETWEEN)
        began = time.monotonic()
        await asyncio.to_thread(act)
        over = time.monotonic()
        await served_some(load, 1, within_s=120)
        first = min(a.at for a in load.answers if a.delivered and a.at >= over)
        self.faults.append(
            {"fault": kind, "fault_s": round(over - began, 3), "recovery_s": round(first - over, 3)}
        )

    def stop_restarted(self) -> None:
        for server in self.restarted:
            pg._stop(server)

    def kill_and_restart(self) -> None:
        self.gw.kill()
        self.gw.start()

    def lose_redis(self, down_s: float) -> None:
        self.redis.stop()
        time.sleep(down_s)
        self.redis.start()

    def restart_postgres(self, down_s: float) -> None:
        if self.server is None:
            return
        pg._stop(self.restarted[-1] if self.restarted else self.server)
        time.sleep(down_s)
        self.restarted.append(start_postgres_again(self.server))


async def _drive(run: Run, key: str, args: argparse.Namespace) -> list[Answer]:
    stop = asyncio.Event()
    load = Load(run.gw.url, key, clients=args.clients)
    running = asyncio.create_task(load.run(stop))
    try:
        for _ in range(args.kills):
            await run.fault(load, "kill -9 gateway", run.kill_and_restart)
        await run.fault(load, "redis stopped", lambda: run.lose_redis(args.down_s))
        if run.server is not None:
            await run.fault(load, "postgres restarted", lambda: run.restart_postgres(args.down_s))
        await served_some(load, BETWEEN)
    finally:
        stop.set()
        answers = await running
    return answers


def one_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="faults-")))
        (tmp / "redis").mkdir()
        redis = stack.enter_context(running_redis(tmp / "redis"))
        ledger, server = stack.enter_context(ledger_for(backend, tmp))
        upstream = stack.enter_context(engine(tmp, "a", "--ttft-ms", "5", "--tokens-per-s", "400"))
        config = write_config(
            tmp / "gw.yaml",
            {"p": [("a", upstream.url)]},
            leases={"p": [lease("a")]},
            settings={"ledger": ledger, "holdTtlS": HOLD_TTL_S, "rateLimiter": redis.url},
            route={"rateLimits": {"requestsPerMinute": 10_000_000}},
        )
        key = create_key(config, CREDIT)
        run = Run(Restartable(config, tmp), redis, server)
        stack.callback(run.stop_restarted)
        stack.callback(run.gw.stop)
        run.gw.start()
        started = time.monotonic()
        answers = asyncio.run(_drive(run, key, args))
        seconds = time.monotonic() - started
        deadline = time.monotonic() + HOLD_TTL_S * 20
        while read_books(ledger).holds and time.monotonic() < deadline:
            time.sleep(0.2)
        books = read_books(ledger)
    problems = reconcile(answers, books, to_nano(CREDIT))
    return {
        "backend": backend,
        "seconds": round(seconds, 1),
        **summary(answers, books),
        "refusals": _refusals(answers),
        "problems": problems[:20],
        "problem_count": len(problems),
        "faults": run.faults,
    }


def _refusals(answers: list[Answer]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in answers:
        if a.status is not None and a.status != 200:
            what = f"{a.status} {a.error_code}"
            counts[what] = counts.get(what, 0) + 1
    return counts


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Faults under load: kill -9, Redis lost, PostgreSQL restarted",
        "",
        f"{report['date']}, commit {report['commit'][:12]}, {m['cpus']} CPUs, load average "
        f"{m['load_average_1m']} (shared, noisy machine). Written by `e2e/bench/faults.py` "
        f"({report['args']}).",
        "",
        "| backend | requests | delivered | in ledger | charged, not delivered | cut off / "
        "no answer | refused 503 | holds left | books |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        books = "reconciled" if r["problem_count"] == 0 else f"{r['problem_count']} problems"
        lines.append(
            f"| {r['backend']} | {r['requests']} | {r['delivered']} | {r['ledger_rows']} | "
            f"{r['rows_not_delivered']} | {r['cut_off']} / {r['no_answer']} | "
            f"{r['refused_503']} | {r['holds_left']} | {books} |"
        )
    lines += [
        "",
        "*delivered*: answered in full (a 200 JSON body, or a stream ending with the usage "
        "chunk and `[DONE]`). *charged, not delivered*: rows whose client did not get the last "
        "bytes (the gateway was killed between the commit and the send; or a stream cut "
        "after its record). *no answer*: requests refused at the socket while the gateway "
        "restarted (clients knock again every 100 ms, so this counts retries) or reset by a "
        "kill. *refused 503*: clean refusals (limiter or ledger unavailable).",
        "",
        "Recovery (fault over -> next answer delivered, no manual action; for a kill, the fault "
        "lasts until the new process is ready, Python start-up on the loaded machine):",
        "",
    ]
    lines += ["| backend | fault | fault lasted s | recovered in s |", "|---|---|---|---|"]
    for r in report["runs"]:
        for f in r["faults"]:
            lines.append(f"| {r['backend']} | {f['fault']} | {f['fault_s']} | {f['recovery_s']} |")
    lines += ["", "## Targets", ""] + [f"- {t}" for t in targets(report["runs"])]
    lines += ["", "Refusals by code: " + "; ".join(
        f"{r['backend']}: {r['refusals'] or 'none'}" for r in report["runs"])]  # fmt: skip
    return "\n".join(lines) + "\n"


def targets(runs: list[dict[str, Any]]) -> list[str]:
    """Each target of issue 17 for these faults, met or not, with its number."""
    out = []
    for r in runs:
        ok = r["problem_count"] == 0
        out.append(
            f"{r['backend']}: every delivered answer in the ledger exactly once, charged what the "
            f"client was told, balance = credit - charges: {'MET' if ok else 'NOT MET'} "
            f"({r['delivered']} delivered, {r['problem_count']} problems)"
        )
        out.append(
            f"{r['backend']}: no double charge: {'MET' if ok else 'NOT MET'} (one row per "
            f"request id; {r['rows_not_delivered']} rows charged for answers whose client did "
            "not get the last bytes: the write-ahead window, docs/faults.md)"
        )
        out.append(
            f"{r['backend']}: no hold leaks after restart: "
            f"{'MET' if r['holds_left'] == 0 else 'NOT MET'} ({r['holds_left']} left)"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--down-s", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--out", type=Path, default=ROOT / "e2e/bench/results")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite faults.md")
    args = parser.parse_args()
    if args.markdown_only:
        report = json.loads((args.out / "faults.json").read_text())
        (args.out / "faults.md").write_text(markdown(report))
        return
    runs = [one_backend(b, args) for b in args.backends.split(",")]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.strip()
    report = {
        "bench": "faults",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "args": f"--kills {args.kills} --down-s {args.down_s} --clients {args.clients}",
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "faults.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
