"""The measured scenarios against one target, each a wrk run plus /proc readings:

1. moderate: non-streamed chat completion (max_tokens 16), 4 connections each waiting a think
   time between requests: p50/p99 latency at a load well below saturation.
2. throughput: the same request on 64 connections, no think time: requests/s.
3. streamed: `stream: true` with usage, max_tokens 256: streams/s times the completion
   tokens of one real response's usage.
4. soak: steady load (16 connections) for minutes while sampling the target's RSS.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatewaybench import stats, wrk
from gatewaybench.procs import BenchError, busy_seconds_by_core, cpu_seconds, rss_mb
from gatewaybench.targets import MODEL, Target

CHAT = "/v1/chat/completions"
# The simulator's answers have a natural length of 16 to 255 tokens, a function of the prompt;
# this one's is 255 (with the default server seed), so streams are as long as max_tokens
# allows. The probes count the tokens from usage anyway: nothing below assumes them.
PROMPT = "Tell the benchmark a long story (342)."
MAX_TOKENS = 16
STREAM_MAX_TOKENS = 256
MODERATE_CONNECTIONS, THINK_MS = 4, 10  # offers at most ~400 requests/s
THROUGHPUT_CONNECTIONS = 64
STREAM_CONNECTIONS = 16
SOAK_CONNECTIONS = 16


@dataclass(frozen=True)
class Profile:
    name: str
    warmup_s: int
    moderate_s: int
    throughput_s: int
    streamed_s: int
    soak_s: int  # our gateway
    litellm_soak_s: int
    sample_every_s: float


FULL = Profile("full", 5, 30, 20, 30, 600, 120, 5.0)
QUICK = Profile("quick", 2, 5, 5, 5, 20, 20, 1.0)


def body(max_tokens: int, stream: bool) -> str:
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
    }
    if stream:
        request |= {"stream": True, "stream_options": {"include_usage": True}}
    return json.dumps(request, separators=(",", ":"))


def stream_usage(sse: str) -> tuple[int | None, int, bool]:
    """(usage.completion_tokens of the last chunk with usage, content chunks, saw [DONE])."""
    tokens, chunks, done = None, 0, False
    for line in sse.splitlines():
        if not line.startswith("data:"):
            continue
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            done = True
            continue
        event = json.loads(data)
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
        chunks += sum(1 for c in event.get("choices", []) if c.get("delta", {}).get("content"))
    return tokens, chunks, done


def probe(target: Target, stream: bool, max_tokens: int) -> dict[str, Any]:
    """One real request: HTTP 200 and the completion tokens its usage reports."""
    host, port = target.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": "application/json", **target.headers}
    try:
        connection.request("POST", CHAT, body(max_tokens, stream), headers)
        answer = connection.getresponse()
        text = answer.read().decode()
        if answer.status != 200:
            raise BenchError(f"{target.name}: probe answered {answer.status}: {text[:300]}")
        if not stream:
            return {"completion_tokens": json.loads(text)["usage"]["completion_tokens"]}
        tokens, chunks, done = stream_usage(text)
    except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException) as exc:
        raise BenchError(f"{target.name}: probe failed: {exc!r}") from exc
    finally:
        connection.close()
    if not done:
        raise BenchError(f"{target.name}: the probe's stream did not end with [DONE]")
    return {"completion_tokens": tokens, "content_chunks": chunks, "done": done}


def measure(target: Target, load: wrk.Load, workdir: Path, core: int | None) -> dict[str, Any]:
    """One wrk run, with the CPU time the target's process tree spent during it and how busy
    each core was (anything beyond the target, wrk and the simulator is another tenant)."""
    cpu0, cores0 = cpu_seconds(target.service.pid), busy_seconds_by_core()
    result = wrk.run(target.url, load, workdir, core)
    cpu, cores = cpu_seconds(target.service.pid) - cpu0, busy_seconds_by_core()
    return {
        **result.to_json(),
        "connections": load.connections,
        "think_ms": load.think_ms,
        "target_cpu_s": round(cpu, 2),
        "target_cpu_util": round(cpu / result.seconds, 3) if result.seconds else None,
        "requests_per_cpu_s": round(result.requests / cpu, 1) if cpu > 0 else None,
        "core_busy": {
            str(n): round((cores[n] - cores0[n]) / result.seconds, 3) if result.seconds else None
            for n in sorted(cores)
        },
    }


def _load(target: Target, stream: bool, connections: int, seconds: int, think: int) -> wrk.Load:
    tokens = STREAM_MAX_TOKENS if stream else MAX_TOKENS
    return wrk.Load(
        path=CHAT,
        body=body(tokens, stream),
        headers=target.headers,
        connections=connections,
        seconds=seconds,
        think_ms=think,
        expect="[DONE]" if stream else "",
    )


def run_all(target: Target, profile: Profile, workdir: Path, core: int | None) -> dict[str, Any]:
    """Probe, warm up, then scenarios 1 to 3."""
    plain = probe(target, stream=False, max_tokens=MAX_TOKENS)
    streamed_probe = probe(target, stream=True, max_tokens=STREAM_MAX_TOKENS)
    per_stream = streamed_probe["completion_tokens"] or streamed_probe["content_chunks"]
    for stream in (False, True):
        wrk.run(target.url, _load(target, stream, 16, profile.warmup_s, 0), workdir, core)
    moderate = measure(
        target, _load(target, False, MODERATE_CONNECTIONS, profile.moderate_s, THINK_MS),
        workdir, core,
    )  # fmt: skip
    throughput = measure(
        target, _load(target, False, THROUGHPUT_CONNECTIONS, profile.throughput_s, 0),
        workdir, core,
    )  # fmt: skip
    streamed = measure(
        target, _load(target, True, STREAM_CONNECTIONS, profile.streamed_s, 0), workdir, core
    )
    streamed |= {
        "tokens_per_stream": per_stream,
        "tokens_per_stream_from_usage": streamed_probe["completion_tokens"] is not None,
        "tokens_per_s": round(streamed["rps"] * per_stream, 0),
        "tokens_per_cpu_s": (
            round(streamed["requests_per_cpu_s"] * per_stream, 0)
            if streamed["requests_per_cpu_s"]
            else None
        ),
    }
    return {
        "probe": {"plain": plain, "streamed": streamed_probe},
        "moderate": moderate,
        "throughput": throughput,
        "streamed": streamed,
    }


def soak(
    target: Target, seconds: int, every_s: float, workdir: Path, core: int | None
) -> dict[str, Any]:
    """Steady load for `seconds`, sampling the target's RSS every `every_s`."""
    pid = target.service.pid
    samples: list[tuple[float, float]] = []
    load = _load(target, False, SOAK_CONNECTIONS, seconds, 0)
    start = time.monotonic()
    with wrk.running(target.url, load, workdir, core) as poll:
        while (result := poll()) is None:
            samples.append((round(time.monotonic() - start, 2), round(rss_mb(pid), 2)))
            time.sleep(every_s)
    samples.append((round(time.monotonic() - start, 2), round(rss_mb(pid), 2)))
    return {
        **result.to_json(),
        "connections": SOAK_CONNECTIONS,
        "rss": stats.rss_summary(samples, warmup_s=stats.soak_warmup_s(seconds)),
        "samples": samples,
    }
