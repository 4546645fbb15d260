"""Benchmark: the floor under any Python relay's CPU per streamed token (issue 16).

    python3 -m uv run --frozen python e2e/bench/relayfloor.py [--streams 64,128]
        [--tokens-per-s 32] [--seconds 20] [--out DIR]

The gateway and the agent each relay a stream's tokens: one event arrives on one socket and
leaves on another. Before any HTTP, JSON or cryptography, a Python process pays for the event
loop's wake-up, the read and the write. This benchmark measures exactly that: a source serves
N connections, writing one 150-byte SSE-like event per connection at the per-stream rate (as
the paced engine does); a relay process (uvloop, as the gateway runs) forwards each
connection's bytes to a sink connection; the sink counts them. The relay's CPU seconds in the
measured window over the events it forwarded is its CPU per token, per relay style:

    protocol   asyncio.Protocol callbacks: data_received -> transport.write (the least
               Python per event asyncio allows)
    streams    asyncio streams: await reader.read -> writer.write -> await drain (the shape
               of an ASGI server plus an HTTP client's stream loop, without their parsing)
    native     the same relay in C (`native/relay.c`, epoll, built here with cc -O2): what
               the kernel's wake-up, read and write cost without an interpreter

The relay is pinned alone to core 0; source and sink share core 1. Writes relay-floor.json
and relay-floor.md. A relay that does more per event than this (parse HTTP, split SSE
events, meter, encrypt) costs more: the gap between this floor and the gateway's and agent's
measured µs per token (sealed-paced.md) is what code can still win.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EVENT = b"data: " + b'{"choices":[{"delta":{"content":"tok"}}]}'.ljust(140, b" ") + b"\n\n"
STYLES = ("protocol", "streams", "native")
NATIVE = Path(__file__).resolve().parent / "native" / "relay.c"
RESULTS = Path(__file__).resolve().parent / "results"


# --- the relay process ------------------------------------------------------------------


class _Pipe(asyncio.Protocol):
    """One direction of a protocol-style relay: what arrives is written to `peer`."""

    def __init__(self) -> None:
        self.peer: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.connecting: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.pending.append(data)
        else:
            self.peer.write(data)


async def _protocol_relay(port: int, upstream: int) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()

    class Downstream(_Pipe):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            async def connect() -> None:
                up = _Pipe()
                up.peer = transport  # type: ignore[assignment]
                up_transport, _ = await loop.create_connection(lambda: up, "127.0.0.1", upstream)
                self.peer = up_transport
                for data in self.pending:
                    up_transport.write(data)

            self.connecting = loop.create_task(connect())  # held: not collected

    return await loop.create_server(Downstream, "127.0.0.1", port)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the harness closed the run's connections
    writer.close()


async def _streams_relay(port: int, upstream: int) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def _relay_main(style: str, port: int, upstream: int) -> None:
    server = await (_protocol_relay if style == "protocol" else _streams_relay)(port, upstream)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():  # "mark" -> user, system CPU s so far; EOF -> stop
        if line.strip() == b"mark":
            times = os.times()
            print(f"{times.user:.6f} {times.system:.6f}", flush=True)
    server.close()


def relay(style: str, port: int, upstream: int) -> None:
    import uvloop

    uvloop.run(_relay_main(style, port, upstream))


# --- source and sink (the harness) ------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.events = 0


async def _source(writer: asyncio.StreamWriter, rate: float, offset: float) -> None:
    try:
        await asyncio.sleep(offset)
        period, start, sent = 1.0 / rate, time.monotonic(), 0
        while not writer.is_closing():
            sent += 1
            writer.write(EVENT)
            await asyncio.sleep(max(0.0, start + sent * period - time.monotonic()))
    except asyncio.CancelledError:
        return  # the run ended


async def _sink(reader: asyncio.StreamReader, counter: Counter) -> None:
    rest = 0
    while data := await reader.read(65536):
        rest += len(data)
        counter.events += rest // len(EVENT)
        rest %= len(EVENT)


async def _run(style: str, streams: int, rate: float, seconds: float) -> dict[str, Any]:
    source_port, relay_port = 18701, 18702
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await _source(writer, rate, (len(writers) % streams) / (streams * rate))

    source = await asyncio.start_server(serve, "127.0.0.1", source_port)
    proc = await asyncio.create_subprocess_exec(
        "taskset", "-c", "0", *_relay_argv(style, relay_port, source_port),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    if proc.stdout is None or proc.stdin is None:
        raise RuntimeError("the relay's pipes did not open")
    await proc.stdout.readline()  # ready
    counter, sinks = Counter(), []
    for _ in range(streams):
        reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
        sinks.append((asyncio.create_task(_sink(reader, counter)), writer))
    await asyncio.sleep(3.0)  # every stream flowing

    async def mark() -> tuple[float, float]:
        proc.stdin.write(b"mark\n")  # type: ignore[union-attr]
        user, system = (await proc.stdout.readline()).split()  # type: ignore[union-attr]
        return float(user), float(system)

    (user0, sys0), events0 = await mark(), counter.events
    await asyncio.sleep(seconds)
    (user1, sys1), events1 = await mark(), counter.events
    cpu = (user1 - user0) + (sys1 - sys0)
    for task, writer in sinks:
        task.cancel()
        writer.close()
    for writer in writers:
        writer.close()
    proc.stdin.close()
    await proc.wait()
    source.close()
    events = events1 - events0
    return {
        "style": style,
        "streams": streams,
        "tokens_per_s": rate,
        "seconds": seconds,
        "events": events,
        "events_per_s": events / seconds,
        "relay_cpu_s": cpu,
        "relay_system_share": (sys1 - sys0) / cpu if cpu else None,
        "relay_us_per_event": cpu / events * 1e6 if events else None,
    }


def _relay_argv(style: str, port: int, upstream: int) -> list[str]:
    if style == "native":
        return [str(_native()), str(port), str(upstream)]
    return [
        sys.executable,
        __file__,
        "--relay",
        style,
        "--port",
        str(port),
        "--upstream",
        str(upstream),
    ]


def _native() -> Path:
    """The C relay, built into a temporary folder (a compiler is part of scripts/setup)."""
    out = Path(tempfile.mkdtemp(prefix="relayfloor-")) / "relay"
    subprocess.run(["cc", "-O2", "-o", str(out), str(NATIVE)], check=True)
    return out


def _commit() -> str:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True)
    return out.stdout.decode().strip()


def _markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"# Relay floor: CPU per streamed token of a bare Python relay ({doc['date']})",
        "",
        f"`{doc['command']}` at commit {doc['commit']}; {doc['machine']}.",
        "",
        "Each event is one token of one stream (150 bytes), written by the source at "
        f"{doc['tokens_per_s']:g} tokens/s per stream; the relay (uvloop, pinned alone to "
        "core 0) forwards it to the sink. No HTTP, no JSON, no cryptography: the floor under "
        "the gateway's and the agent's CPU per token (`sealed-paced.md`). \"In the kernel\" is "
        "the relay's system CPU time: the wake-up, the read and the write on loopback TCP, "
        "which no user-space code (Python or C) avoids while each token is its own event.",
        "",
        "| relay style | streams | events/s | relay CPU µs per event | of it in the kernel |",
        "|---|---|---|---|---|",
    ]
    for run in doc["runs"]:
        us = run["relay_us_per_event"]
        lines.append(
            f"| {run['style']} | {run['streams']} | {run['events_per_s']:,.0f} | "
            f"{'n/a' if us is None else f'{us:.1f}'} | {_share(run['relay_system_share'])} |"
        )
    return "\n".join(lines) + "\n"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="64,128")
    parser.add_argument("--tokens-per-s", type=float, default=32.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--relay", choices=STYLES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        relay(args.relay, args.port, args.upstream)
        return
    os.sched_setaffinity(0, {1})
    runs = [
        asyncio.run(_run(style, int(n), args.tokens_per_s, args.seconds))
        for n in args.streams.split(",")
        for style in STYLES
    ]
    doc = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": f"{os.cpu_count()} CPUs, {os.uname().machine}, Python {sys.version.split()[0]}",
        "command": "python3 -m uv run --frozen python e2e/bench/relayfloor.py "
        + " ".join(sys.argv[1:]),
        "tokens_per_s": args.tokens_per_s,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "relay-floor.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "relay-floor.md").write_text(_markdown(doc))
    print(_markdown(doc))


if __name__ == "__main__":
    main()
