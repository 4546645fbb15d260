"""The prose of the report: how the run was set up, and observations that qualify the
numbers (a target that failed, errors, a saturated or shared core, a short soak)."""

from __future__ import annotations

from typing import Any

from gatewaybench import litellm, scenarios, stats


def other_tenants(scenario: dict[str, Any], core: int | None) -> float | None:
    """How busy the target's core was beyond the target itself (0 on a quiet machine)."""
    busy = scenario["core_busy"].get(str(core))
    util = scenario["target_cpu_util"]
    return None if busy is None or util is None else busy - util


_CAPACITY = {"throughput": "requests per CPU-second", "streamed": "tokens per CPU-second"}


def _saturation_notes(
    name: str, result: dict[str, Any], cores: tuple[int | None, int | None]
) -> list[str]:
    """Say when a number measures something other than what its row claims."""
    said = []
    busy = (result.get("moderate") or {}).get("target_cpu_util")
    if busy is not None and busy >= 0.8:
        said.append(
            f"{name} was busy {busy:.2f} of its core at the moderate load "
            f"({result['moderate']['rps']:.0f} req/s): its latency there includes queueing"
        )
    target_core, load_core = cores
    for scenario, capacity in _CAPACITY.items():
        part = result.get(scenario)
        if not part:
            continue
        other = other_tenants(part, target_core)
        if other is not None and other > 0.1:
            said.append(
                f"{name} / {scenario}: core {target_core} was also busy {other:.2f} of the "
                "time with other processes (a shared machine): its numbers there are low"
            )
        util, load_busy = part["target_cpu_util"], part["core_busy"].get(str(load_core))
        if util is not None and util < 0.85:
            where = (
                f"core {load_core} (simulator + wrk) was saturated ({load_busy:.2f}) and is "
                "the limit"
                if load_busy is not None and load_busy >= 0.95
                else "not bound by its own CPU (other processes, waits, or the upstream)"
            )
            said.append(
                f"{name} / {scenario}: used {util:.2f} of its core, {where}; {capacity} "
                "estimates its one-core capacity"
            )
    return said


def _last_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    head = lines[0] if lines else ""
    last = lines[-1] if len(lines) > 1 else ""
    return f"{head} … {last}"[:limit] if last else head[:limit]


def observations(
    results: dict[str, Any],
    *,
    cores: tuple[int | None, int | None],
    quick: bool,
    gateway_soak_s: int | None,
) -> list[str]:
    """What a reader must know to read the numbers: failures, errors, saturation, noise."""
    said = []
    for name, result in results.items():
        if not result.get("available"):
            said.append(f"**{name}: {_last_line(result['reason'])}** (whole message in the JSON)")
            continue
        for scenario in stats.SCENARIOS:
            part = result.get(scenario)
            if part and part["errors"]:
                said.append(
                    f"**{name} / {scenario}: {part['errors']} errors** of {part['requests']} "
                    f"requests (first: {part['first_bad'][:160] or 'socket error'})"
                )
        if name != "direct":
            said += _saturation_notes(name, result, cores)
        streams = (result.get("streamed") or {}).get("requests")
        if streams is not None and streams < 10 * scenarios.STREAM_CONNECTIONS:
            said.append(
                f"{name}: only {streams} streams completed on {scenarios.STREAM_CONNECTIONS} "
                "connections (wrk counts finished streams only): its tokens/s is coarse"
            )
    if quick:
        said.append("quick profile: short runs, noisy numbers; not for the record")
    if gateway_soak_s is not None and gateway_soak_s < 600:
        said.append(f"gateway soak {gateway_soak_s} s, shorter than the 10-minute goal")
    return said


def setup(sample_every_s: float) -> list[str]:
    """How each target ran and what load it got."""
    return [
        "direct: the engine simulator (`--ttft-ms 0 --tokens-per-s 0`, one worker); the "
        "CPU columns of `direct` are the simulator's own",
        "gateway: `teeroute gateway serve --workers 1`: SQLite ledger (metering), memory "
        "rate limiter with limits far above the load, one API key with credit 1,000,000",
        f"litellm: LiteLLM {litellm.VERSION} proxy from PyPI in its own virtualenv, "
        "`--num_workers 1` (uvicorn, uvloop; httptools added, as ours runs on it), "
        "master-key auth, **no database**: its default mode, without virtual keys, spend "
        "tracking, budgets or per-key limits, so it does less per request than our gateway",
        f"load: wrk, 1 thread; moderate = {scenarios.MODERATE_CONNECTIONS} connections with "
        f"{scenarios.THINK_MS} ms think time each (a closed loop: at most "
        f"~{1000 * scenarios.MODERATE_CONNECTIONS // scenarios.THINK_MS} req/s, fewer for a "
        f"slower target); max = {scenarios.THROUGHPUT_CONNECTIONS} "
        f"connections; streamed = {scenarios.STREAM_CONNECTIONS} connections, max_tokens "
        f"{scenarios.STREAM_MAX_TOKENS} with usage; soak = {scenarios.SOAK_CONNECTIONS} "
        f"connections, RSS of the process tree every {sample_every_s:g} s",
        "non-streamed requests: one short user message, max_tokens "
        f"{scenarios.MAX_TOKENS}; latency is wrk's, per request on keep-alive connections; "
        "added = target - direct in the same run",
    ]
