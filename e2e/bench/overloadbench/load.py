"""The load of the overload benchmark: wrk with a status-counting script, a probe client
measuring admitted latency, an RSS sampler, and slowloris connections."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from gatewaybench.procs import pinned, rss_mb

BODY = '{"model":"sim-model","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'

_LUA = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) s200, s503, s429, s408, other, bare503 = 0, 0, 0, 0, 0, 0 end
function response(status, headers, body)
  if status == 200 then s200 = s200 + 1
  elseif status == 503 then
    s503 = s503 + 1
    local wait = headers["retry-after"] or headers["Retry-After"]
    if wait == nil then bare503 = bare503 + 1 end
  elseif status == 429 then s429 = s429 + 1
  elseif status == 408 then s408 = s408 + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local t = {s200 = 0, s503 = 0, s429 = 0, s408 = 0, other = 0, bare503 = 0}
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
  end
  local e = summary.errors
  io.write(string.format('WRK {"s200":%%d,"s503":%%d,"s429":%%d,"s408":%%d,"other":%%d,' ..
    '"bare503":%%d,"socket_errors":%%d,"duration_s":%%.2f,"p50_ms":%%.1f,"p99_ms":%%.1f}\\n',
    t.s200, t.s503, t.s429, t.s408, t.other, t.bare503,
    e.connect + e.read + e.write + e.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
"""


@dataclass
class Samples:
    """What the probe and the RSS sampler saw, with monotonic timestamps."""

    probe: list[tuple[float, int, float]] = field(default_factory=list)  # (t, status, ms)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (t, MiB)
    stop: threading.Event = field(default_factory=threading.Event)


def wrk(url: str, key: str, connections: int, seconds: float, core: int | None) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA % {"body": BODY, "key": key})
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s"]
    done = subprocess.run(
        pinned([*argv, "-s", script.name, url + "/v1/chat/completions"], core),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    Path(script.name).unlink()
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {done.stdout[-500:]} {done.stderr[-500:]}")
    result: dict[str, Any] = json.loads(line.removeprefix("WRK "))
    result["connections"] = connections
    result["rps_200"] = round(result["s200"] / result["duration_s"], 1)
    return result


def probe(url: str, key: str, samples: Samples) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(timeout=30) as http:
        while not samples.stop.is_set():
            began = time.monotonic()
            try:
                status = http.post(url + "/v1/chat/completions", content=BODY, headers=headers)
                code = status.status_code
            except httpx.TransportError:
                code = 0
            samples.probe.append((began, code, (time.monotonic() - began) * 1e3))
            samples.stop.wait(max(0.0, 0.1 - (time.monotonic() - began)))


def sample_rss(pid: int, samples: Samples) -> None:
    while not samples.stop.wait(0.25):
        samples.rss.append((time.monotonic(), rss_mb(pid)))


async def _slow_client(
    url: str, first: bytes, byte: bytes, until: float, tally: dict[str, Any]
) -> None:
    """One slowloris connection after another until `until`: send `first`, then `byte` each
    second; count how each ended and how long it stayed open."""
    host_, port = url.removeprefix("http://").split(":")
    while time.monotonic() < until:
        opened = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(host_, int(port))
            writer.write(first)
            answer = b""
            while time.monotonic() < until:
                try:
                    answer = await asyncio.wait_for(reader.read(4096), 1.0)
                    break
                except TimeoutError:
                    writer.write(byte)
            writer.close()
        except OSError:
            answer = b"reset"
        if time.monotonic() >= until:
            return
        kind = (
            "408" if answer.startswith(b"HTTP/1.1 408") else ("closed" if not answer else "other")
        )
        tally[kind] = tally.get(kind, 0) + 1
        tally["longest_open_s"] = max(tally.get("longest_open_s", 0.0), time.monotonic() - opened)


def slowloris(url: str, key: str, heads: int, bodies: int, seconds: float) -> dict[str, Any]:
    until = time.monotonic() + seconds
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
    body = head + f"Authorization: Bearer {key}\r\nContent-Length: 100000\r\n\r\n{{".encode()
    tallies: dict[str, dict[str, Any]] = {"head": {}, "body": {}}

    async def attack() -> None:
        clients = [_slow_client(url, head, b"x", until, tallies["head"]) for _ in range(heads)]
        clients += [_slow_client(url, body, b" ", until, tallies["body"]) for _ in range(bodies)]
        await asyncio.gather(*clients)

    asyncio.run(attack())
    for tally in tallies.values():
        if "longest_open_s" in tally:
            tally["longest_open_s"] = round(tally["longest_open_s"], 1)
    return {"head_connections": heads, "body_connections": bodies, "cut_off": tallies}
