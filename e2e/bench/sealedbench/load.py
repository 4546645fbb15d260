"""The load: wrk (one thread, pinned) with gatewaybench's script (status and body checks, one
`WRK_SUMMARY` line) plus a `request()` hook that cycles through a pool of bodies read from a
file, one per line, hex-encoded (a sealed body is binary frames) and decoded once as the
script starts, before any request is timed. Every mode goes through the same hook (plain
modes with a pool of one body), so the load generator does the same work per request
whatever the mode. Each kind of
request (`kinds`) has two scenarios: moderate load (latency) and max load (throughput).

`measure` is one wrk run with the CPU time the gateway, the agent and the engine each spent
during it, how busy each core was, and how many connection attempts a full listen queue
dropped (the reason for latencies of whole seconds).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatewaybench import wrk
from gatewaybench.procs import (
    BenchError,
    Service,
    busy_seconds_by_core,
    cpu_seconds,
    die_with_parent,
)

from sealedbench.kinds import KINDS, Kind
from sealedbench.modes import CHAT, Mode, expect
from teeroute.sealing.frames import CONTENT_TYPE


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: Kind
    connections: int
    think_ms: int  # wait between a connection's requests (not in the latency)

    @property
    def saturating(self) -> bool:
        return self.think_ms == 0


MODERATE_CONNECTIONS, THINK_MS = 4, 10  # a closed loop offering at most ~400 req/s
MAX_CONNECTIONS = 64


def scenarios(kinds: Sequence[Kind]) -> tuple[Scenario, ...]:
    """Per kind, in order: its moderate-load run, then its max-load run."""
    return tuple(
        scenario
        for kind in kinds
        for scenario in (
            Scenario(kind.moderate, kind, MODERATE_CONNECTIONS, THINK_MS),
            Scenario(kind.maximum, kind, MAX_CONNECTIONS, 0),
        )
    )


SCENARIOS = scenarios(KINDS)

_POOL_LUA = """
-- appended by e2e/bench/sealedbench/load.py: each request takes the pool's next body
local pool = {{}}
local function unhex(text)
  return (text:gsub("%x%x", function(pair) return string.char(tonumber(pair, 16)) end))
end
for line in io.lines([==[{path}]==]) do pool[#pool + 1] = unhex(line) end
local next_body = 0
function request()
  next_body = next_body % #pool + 1
  return wrk.format(nil, nil, nil, pool[next_body])
end
"""


def write_pool(path: Path, bodies: Sequence[bytes]) -> Path:
    """One body per line, hex-encoded (the script decodes them as it starts)."""
    if not bodies or not all(bodies):
        raise BenchError("a pool needs at least one body and no empty one")
    path.write_bytes(b"".join(item.hex().encode() + b"\n" for item in bodies))
    return path


def load_for(mode: Mode, scenario: Scenario, first_body: bytes, key: str, seconds: int) -> wrk.Load:
    headers = {"Authorization": f"Bearer {key}"}
    if mode.client_sealed:
        headers["Content-Type"] = CONTENT_TYPE
    return wrk.Load(
        path=CHAT,
        body=first_body.decode(),
        headers=headers,
        connections=scenario.connections,
        seconds=seconds,
        think_ms=scenario.think_ms,
        expect=expect(mode, scenario.kind.stream),
    )


def script(load: wrk.Load, pool_file: Path) -> str:
    if "]==]" in str(pool_file):
        raise ValueError("a Lua long-bracket terminator in the pool's path")
    return wrk.lua_script(load) + _POOL_LUA.format(path=pool_file)


def run(
    url: str, load: wrk.Load, pool_file: Path, workdir: Path, core: int | None
) -> wrk.WrkResult:
    path = workdir / "load.lua"
    path.write_text(script(load, pool_file))
    proc = subprocess.Popen(
        wrk.command(url, load, path, core),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,  # safe: the harness is single-threaded
    )
    try:
        output = proc.communicate(timeout=load.seconds + 60)[0].decode(errors="replace")
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish in {load.seconds + 60} s") from exc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if proc.returncode != 0:
        raise BenchError(f"wrk exited {proc.returncode}:\n{output[-2000:]}")
    return wrk.parse_output(output)


def listen_overflows() -> int | None:
    """Connection attempts the kernel dropped since boot because a listen queue was full
    (TcpExt ListenOverflows, machine-wide); each costs the client a SYN retransmission (1 s,
    then 3 s, 7 s): the cause of multi-second latency outliers."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table["ListenOverflows"]) if "ListenOverflows" in table else None
    return None


def measure(
    url: str,
    load: wrk.Load,
    pool_file: Path,
    workdir: Path,
    core: int | None,
    services: Mapping[str, Service],
) -> dict[str, Any]:
    """One run: wrk's numbers, CPU seconds per process tree, busy seconds per core."""
    cpu0 = {name: cpu_seconds(s.pid) for name, s in services.items()}
    cores0, overflows0, start = busy_seconds_by_core(), listen_overflows(), time.monotonic()
    result = run(url, load, pool_file, workdir, core)
    cpu = {name: round(cpu_seconds(s.pid) - cpu0[name], 3) for name, s in services.items()}
    cores, overflows = busy_seconds_by_core(), listen_overflows()
    for name, service in services.items():
        if not service.alive():
            raise BenchError(f"{name} died during the run:\n{service.log_tail()}")
    return {
        **result.to_json(),
        "wall_s": round(time.monotonic() - start, 2),
        "connections": load.connections,
        "think_ms": load.think_ms,
        "cpu_s": cpu,
        "core_busy_s": {str(n): round(cores[n] - cores0[n], 3) for n in sorted(cores)},
        "listen_overflows": (
            overflows - overflows0 if overflows is not None and overflows0 is not None else None
        ),
    }
