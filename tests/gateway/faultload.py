"""Load, faults and the reconciliation of the gateway's fault tests and of e2e/bench/faults.py.

    gw = Restartable(config, tmp)        # `teeroute gateway serve` on one fixed port
    gw.start(); ...; gw.kill()           # kill -9, then gw.start() again on the same port
    load = Load(gw.url, key)             # clients posting whole and streamed requests
    answers = await load.run(until)      # what each client was answered
    books = read_books(ledger_url)       # the ledger's rows, holds and balance
    problems = reconcile(answers, books, credit_nano)   # [] when the books are right

An answer counts as delivered when the client got all of it: a 200 JSON body with its usage,
or a stream ending with the gateway's usage chunk and `[DONE]`. Each delivered answer must be
in the ledger exactly once, charged what the client was told; the balance must be the credit
less every charge; after the holds' TTL no hold is left.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson

from teeroute_gateway.ledger import to_nano

from . import pg
from .pg import PostgresServer
from .procs import CLI, free_port, with_gateway_key

START_TIMEOUT_S = 60
PROMPT = [{"role": "user", "content": "tell me about faults"}]


class Restartable:
    """A gateway process on a fixed port that can be killed (-9) and started again."""

    def __init__(self, config: Path, directory: Path, name: str = "gateway") -> None:
        self.config = with_gateway_key(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = directory
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        argv = [*CLI, "gateway", "serve", "--config", str(self.config), "--port", str(self.port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEEROUTE_")}
        self.starts += 1
        log = self.directory / f"{self.name}-{self.starts}.log"
        with log.open("wb") as output:
            self.process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{log.name} exited: {log.read_text()[-4000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{log.name} did not become ready: {log.read_text()[-4000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, whatever was in flight is cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:]
            for p in sorted(self.directory.glob(f"{self.name}-*.log"))
        )


@dataclass
class Answer:
    """What one client request got: its id, status, whether all of it arrived, and the cost it
    was told (nano-units), or the error code."""

    rid: str | None = None
    status: int | None = None  # None: no HTTP answer at all (refused, reset)
    delivered: bool = False
    cost_nano: int | None = None
    error_code: str | None = None
    retry_after: str | None = None
    stream: bool = False
    at: float = 0.0  # time.monotonic() when it ended


@dataclass
class Load:
    """`clients` loops posting requests (every other one streamed) until told to stop."""

    url: str
    key: str
    clients: int = 16
    max_tokens: int = 12
    model: str = "sim-model"
    answers: list[Answer] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> list[Answer]:
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.url, limits=limits, timeout=30) as http:
            await asyncio.gather(*(self._client(http, n, stop) for n in range(self.clients)))
        return self.answers

    async def _client(self, http: httpx.AsyncClient, n: int, stop: asyncio.Event) -> None:
        turn = n
        while not stop.is_set():
            turn += 1
            answer = await self.one(http, stream=turn % 2 == 0)
            self.answers.append(answer)
            if answer.status is None or answer.status == 503:
                await asyncio.sleep(0.1)  # down or refusing: knock again soon

    async def one(self, http: httpx.AsyncClient, *, stream: bool) -> Answer:
        body = {"model": self.model, "messages": PROMPT, "max_tokens": self.max_tokens}
        headers = {"authorization": f"Bearer {self.key}"}
        answer = Answer(stream=stream)
        try:
            if stream:
                await _streamed(http, {**body, "stream": True}, headers, answer)
            else:
                got = await http.post("/v1/chat/completions", json=body, headers=headers)
                _whole(got, answer)
        except httpx.HTTPError:
            pass  # cut off: whatever arrived is in `answer`, and it was not delivered
        answer.at = time.monotonic()
        return answer


def _whole(got: httpx.Response, answer: Answer) -> None:
    answer.rid, answer.status = got.headers.get("x-request-id"), got.status_code
    answer.retry_after = got.headers.get("retry-after")
    if got.status_code != 200:
        answer.error_code = _error_code(got.content)
        return
    body = orjson.loads(got.content)
    answer.cost_nano = to_nano(got.headers["x-teeroute-cost"])
    answer.delivered = isinstance(body.get("usage"), dict) and bool(body.get("choices"))


async def _streamed(
    http: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str], answer: Answer
) -> None:
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as got:
        answer.rid, answer.status = got.headers.get("x-request-id"), got.status_code
        answer.retry_after = got.headers.get("retry-after")
        raw = await got.aread()
    if answer.status != 200:
        answer.error_code = _error_code(raw)
        return
    events = [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e.strip()]
    done = events[-1:] == [b"[DONE]"]
    last = _json_or_none(events[-2 if done else -1]) if len(events) > done else None
    if last is None or "error" in last:  # an error event ends a stream, without [DONE]
        answer.error_code = str(last["error"].get("code")) if last else "no-usage-chunk"
    elif done and isinstance(last.get("usage"), dict):
        cost = Decimal(repr(last["usage"]["cost"])).quantize(Decimal("1E-9"))
        answer.cost_nano, answer.delivered = to_nano(cost), True


async def served_some(load: Load, n: int, within_s: float = 60) -> None:
    """Until `n` more answers were delivered (load on the gateway, whatever its speed)."""
    target = sum(a.delivered for a in load.answers) + n
    async with asyncio.timeout(within_s):
        while sum(a.delivered for a in load.answers) < target:
            await asyncio.sleep(0.05)


def _json_or_none(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _error_code(raw: bytes) -> str | None:
    try:
        error = orjson.loads(raw)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "not-openai-shaped"
    return str(error.get("code"))


@dataclass
class Books:
    """The ledger as stored: request id -> (rows, charged nano), open holds, the account."""

    rows: dict[str, tuple[int, int]]
    holds: int
    held_nano: int
    balance_nano: int


def read_books(ledger: str) -> Books:
    """Straight from the database (not through a gateway): the SQLite file or PostgreSQL URL."""
    queries = (
        "SELECT request_id, count(*), sum(charged_nano) FROM ledger_usage GROUP BY request_id",
        "SELECT count(*) FROM ledger_holds",
        "SELECT held_nano, balance_nano FROM ledger_accounts",
    )
    if ledger.startswith("sqlite:///"):
        with sqlite3.connect(ledger.removeprefix("sqlite:///")) as db:
            results = [db.execute(q).fetchall() for q in queries]
    else:
        import psycopg

        with psycopg.connect(ledger) as db:
            results = [db.execute(q).fetchall() for q in queries]
    rows, holds, accounts = results
    [(held, balance)] = accounts  # the tests' one account
    return Books(
        {str(r): (int(n), int(c)) for r, n, c in rows}, int(holds[0][0]), int(held), int(balance)
    )


def reconcile(answers: list[Answer], books: Books, credit_nano: int) -> list[str]:
    """Every way the books disagree with what the clients saw; [] when they agree."""
    problems = []
    delivered = [a for a in answers if a.delivered]
    for answer in delivered:
        assert answer.rid is not None
        count, charged = books.rows.get(answer.rid, (0, 0))
        if count != 1:
            problems.append(f"{answer.rid}: delivered, {count} ledger rows")
        elif charged != answer.cost_nano:
            problems.append(f"{answer.rid}: told {answer.cost_nano}, charged {charged}")
    doubled = [rid for rid, (count, _) in books.rows.items() if count != 1]
    problems += [f"{rid}: {books.rows[rid][0]} rows" for rid in doubled]
    spent = sum(charged for _, charged in books.rows.values())
    if books.balance_nano != credit_nano - spent:
        problems.append(f"balance {books.balance_nano} != credit {credit_nano} - spent {spent}")
    if books.holds or books.held_nano:
        problems.append(f"{books.holds} holds left, {books.held_nano} nano held")
    return problems


def summary(answers: list[Answer], books: Books) -> dict[str, int]:
    """Counts for reports: answers by kind, ledger rows, and rows nobody received."""
    delivered = {a.rid for a in answers if a.delivered}
    statuses = Counter(str(a.status) if a.status else "no-answer" for a in answers)
    return {
        "requests": len(answers),
        "delivered": len(delivered),
        "cut_off": sum(1 for a in answers if a.status == 200 and not a.delivered),
        "refused_503": statuses.get("503", 0),
        "no_answer": statuses.get("no-answer", 0),
        "ledger_rows": len(books.rows),
        "rows_not_delivered": len(set(books.rows) - delivered),
        "holds_left": books.holds,
    }


def start_postgres_again(server: PostgresServer) -> PostgresServer:
    """Start a stopped test server again on its port and data directory (the caller stops
    the returned one: the original's context manager only knows the first process)."""
    argv = [str(pg.bin_dir() / "postgres"), "-D", str(server.directory / "data")]
    argv += ["-p", str(server.port), "-c", "listen_addresses=127.0.0.1"]
    argv += ["-c", f"unix_socket_directories={server.directory}", "-c", "max_connections=200"]
    for key, value in pg.FAST.items():
        argv += ["-c", f"{key}={value}"]
    with (server.directory / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [*pg._as_server_user(), *argv], stdout=log, stderr=subprocess.STDOUT
        )
    again = PostgresServer(server.port, server.directory, process)
    pg._wait_ready(again)
    return again


def probe(url: str, key: str) -> Answer:
    """One whole request, as a client would send it (during an outage: how it is refused)."""
    body = {"model": "sim-model", "messages": PROMPT, "max_tokens": 4}
    answer = Answer()
    try:
        got = httpx.post(
            f"{url}/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )
    except httpx.HTTPError:
        return answer
    _whole(got, answer)
    return answer
