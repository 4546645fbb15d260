"""The benchmark's outputs: `sealed.json` (everything measured, each round included) and
`sealed.md` (a mode x metric table per kind of request, the ledger's receipt verdicts, the
client's own cost per kind, the goals with pass/miss, the floor of sealing's cryptography
against the 0.9x budget, the machine and the layout), and the
observations that qualify the numbers. `render` and `observations` are pure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gatewaybench import host
from gatewaybench.report import Getter, show, verdict_text

from sealedbench.kinds import KINDS, Kind, measured
from sealedbench.load import MAX_CONNECTIONS, MODERATE_CONNECTIONS, THINK_MS
from sealedbench.modes import MODES
from sealedbench.stats import TARGET_RATIO

HEADS = " | ".join(mode.label for mode in MODES)


def rows(kind: Kind) -> tuple[tuple[str, Getter], ...]:
    """The metrics of one kind's table, read from a mode's view (its results by scenario,
    `cmp`: its comparison with plain, `probe`: its probe of this kind)."""
    m, x, c = kind.moderate, kind.maximum, ("cmp", kind.name)
    return (
        (
            "completion tokens per answer (the probe's usage)",
            show("{}", ("probe", "completion_tokens")),
        ),
        ("moderate load: achieved req/s", show("{:.0f}", (m, "rps"))),
        ("moderate load: p50 / p99 ms", show("{:.2f} / {:.2f}", (m, "p50_ms"), (m, "p99_ms"))),
        (
            "**added p50 / p99 ms** (vs plain, moderate load)",
            show("{:+.2f} / {:+.2f}", (*c, "added_p50_ms"), (*c, "added_p99_ms")),
        ),
        ("**max req/s** (64 connections)", show("{:.0f}", (x, "rps"))),
        ("**sealed / plain max req/s**", show("{:.2f}x", (*c, "throughput_ratio"))),
        ("max load: p50 / p99 ms", show("{:.1f} / {:.1f}", (x, "p50_ms"), (x, "p99_ms"))),
        ("max load: limited by", show("{}", (x, "bottleneck"))),
        ("max load: gateway CPU (1.0 = a core)", show("{:.2f}", (x, "cpu_util", "gateway"))),
        (
            "max load: busy core 0 / core 1",
            show("{:.2f} / {:.2f}", (x, "core_busy", "0"), (x, "core_busy", "1")),
        ),
        (
            "CPU ms per request: gateway",
            show("{:.3f}", (x, "cpu_ms_per_request", "gateway")),
        ),
        (
            "CPU ms per request: agent / engine",
            show(
                "{:.3f} / {:.3f}",
                (x, "cpu_ms_per_request", "agent"),
                (x, "cpu_ms_per_request", "engine"),
            ),
        ),
        (
            "CPU ms per request: rest of core 1 (wrk, harness)",
            show("{:.3f}", (x, "load_core_rest_ms_per_request")),
        ),
        ("requests per gateway CPU-second", show("{:.0f}", (x, "requests_per_gateway_cpu_s"))),
        (
            "**gateway capacity sealed / plain** (per gateway CPU-s)",
            show("{:.2f}x", (*c, "gateway_capacity_ratio")),
        ),
        (
            "errors (non-200, bad body, socket): moderate / max",
            show("{} / {}", (m, "errors"), (x, "errors")),
        ),
        (
            "connections dropped by a full listen queue: moderate / max",
            show("{} / {}", (m, "listen_overflows"), (x, "listen_overflows")),
        ),
    )


def _table(doc: dict[str, Any], kind: Kind) -> list[str]:
    probes = doc.get("probes") or {}
    views = {
        mode.name: {
            **doc["results"].get(mode.name, {}),
            "cmp": doc["comparison"].get(mode.name),
            "probe": probes.get(f"{mode.name}/{kind.name}"),
        }
        for mode in MODES
    }
    lines = [f"## {kind.heading}", "", f"| metric | {HEADS} |", "|---" * (len(MODES) + 1) + "|"]
    for label, get in rows(kind):
        cells = [get(views[mode.name]) or "—" for mode in MODES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _ledger(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| mode | records | receipt `valid` | answered by the clients | cancelled by wrk "
        "at a run's end | flagged | records by outcome/receipt |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        t = doc["ledger"].get(mode.name)
        if not t:
            continue
        flagged = ", ".join(f"{k} {v}" for k, v in t["flagged"].items()) or "0"
        outcomes = ", ".join(f"`{k}` {v}" for k, v in t["by_outcome_and_receipt"].items())
        lines.append(
            f"| {mode.label} | {t['records']} | {t['valid']} | {t['completed_by_clients']} | "
            f"{t['cancelled']} | {flagged} | {outcomes} |"
        )
    return lines


def _client_cost(doc: dict[str, Any]) -> list[str]:
    cost = doc.get("client_cost") or {}
    kinds = [k for k in KINDS if k.name in cost]
    if not kinds:
        return ["not measured"]
    table: tuple[tuple[str, Getter], ...] = (
        ("frames per answer / plaintext bytes", show("{} / {}", ("frames",), ("answer_bytes",))),
        ("completion tokens per answer (in the receipt)", show("{}", ("output_tokens",))),
        (
            "seal the request in the session (meta JSON + AEAD), µs median / p99",
            show("{:.0f} / {:.0f}", ("seal", "median_us"), ("seal", "p99_us")),
        ),
        (
            "open the chunks, µs median / p99",
            show("{:.0f} / {:.0f}", ("open", "median_us"), ("open", "p99_us")),
        ),
        (
            "check the receipt (HMAC tag + digests), µs median / p99",
            show("{:.0f} / {:.0f}", ("verify", "median_us"), ("verify", "p99_us")),
        ),
        (
            "**total per request, µs median / mean**",
            show("{:.0f} / {:.0f}", ("total", "median_us"), ("total", "mean_us")),
        ),
        ("requests one client core can seal + open + verify per s", show(
            "{:.0f}", ("requests_per_core_s",))),
        (
            "open a session (once per enclave: X25519 + HKDF, WELCOME checked), µs median / p99",
            show("{:.0f} / {:.0f}", ("handshake", "median_us"), ("handshake", "p99_us")),
        ),
    )  # fmt: skip
    lines = ["| client's work | " + " | ".join(k.label for k in kinds) + " |"]
    lines.append("|---" * (len(kinds) + 1) + "|")
    for label, get in table:
        lines.append(f"| {label} | " + " | ".join(get(cost[k.name]) or "—" for k in kinds) + " |")
    return lines


OP_LABELS = (
    ("x25519_keygen", "X25519 key pair", "µs"),
    ("x25519_exchange", "X25519 exchange", "µs"),
    ("ed25519_sign", "Ed25519 sign", "µs"),
    ("ed25519_verify", "Ed25519 verify", "µs"),
    ("hmac_sha256_receipt", "HMAC-SHA256 of a receipt", "µs"),
    ("aes128gcm_per_kib", "AES-128-GCM", "µs/KiB"),
    ("sha256_per_kib", "SHA-256", "µs/KiB"),
)
SIDES = (("gateway", "gateway's capacity"), ("end_to_end", "end to end"))


def _floor(doc: dict[str, Any]) -> list[str]:
    found = doc.get("floor") or {}
    ops, reach = found.get("primitives") or {}, found.get("reach") or {}
    if not ops:
        return ["not measured"]
    timed = ", ".join(f"{label} {ops[key]:.2f} {unit}" for key, label, unit in OP_LABELS)
    lines = [
        f"On this machine: {timed}.",
        "",
        f"| mode | kind | side | {TARGET_RATIO}x budget µs | public-key floor µs | + tags µs "
        "| + per-byte µs | sealing added (measured) µs | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {kind.name: kind.label for kind in KINDS}
    for mode, by_kind in reach.items():
        for kind, sides in by_kind.items():
            for side, said in SIDES:
                row = sides.get(side)
                if row is None:
                    continue
                added = "—" if row["added_us"] is None else f"{row['added_us']:+.0f}"
                lines.append(
                    f"| {mode} | {labels.get(kind, kind)} | {said} | {row['budget_us']:.0f} "
                    f"| {row['public_key_us']:.1f} | {row.get('mac_us', 0):.1f} "
                    f"| {row['per_byte_us']:.0f} | {added} "
                    f"| {row['verdict']} |"
                )
    return lines


def render(doc: dict[str, Any]) -> str:
    goals = ["| goal | mode | verdict |", "|---|---|---|"]
    goals += [f"| {r['goal']} | {r['mode']} | {verdict_text(r)} |" for r in doc["checks"]]
    facts = host.fact_lines(doc, f"layout: {doc['layout']}")
    notes = [f"- {note}" for note in doc["notes"]] or ["- none"]
    return "\n".join(
        [
            f"# Sealed-mode benchmark ({doc['when']}, {doc['profile']} profile)",
            "",
            f"`{doc['command']}`",
            "",
            "Sealed against plain through the same gateway process, enclave agent and engine "
            "simulator. Client-sealed columns exclude the client's own sealing work (wrk sends "
            "pre-sealed bodies); that cost is measured separately below.",
            "",
            *(line for kind in measured(doc) for line in _table(doc, kind)),
            "## Receipts in the gateway's ledger",
            "",
            *_ledger(doc),
            "",
            "## The client's own cost of sealing (not the gateway's)",
            "",
            *_client_cost(doc),
            "",
            "## Goals",
            "",
            *goals,
            "",
            f"## How far {TARGET_RATIO}x is: the floor of sealing's cryptography",
            "",
            "The cryptography wire v2 cannot do without, timed alone: the public-key work "
            "amortized (sessions: one X25519 handshake per session, left out; one Ed25519 "
            "signature on a Merkle root per batch of receipts, signed by the enclave and "
            "checked by the gateway), the receipt's HMAC tags, and the per-byte work of "
            "sealing the answer (AES-128-GCM, and SHA-256 for the receipt's "
            "`response_sha256`); the budget is what plain spends per request on that side times "
            f"1/{TARGET_RATIO} - 1 (the gateway's own CPU; end to end, the core that limited "
            "plain's max-load run). Everything else sealing adds is on top of the floor.",
            "",
            *_floor(doc),
            "",
            "## Setup",
            "",
            *facts,
            "",
            "## Notes",
            "",
            *notes,
            "",
        ]
    )


def _limit_note(mode: str, kind: str, row: dict[str, Any]) -> list[str]:
    """What limited the max-load runs, and so what the end-to-end ratio measures."""
    ratio, limit = row["throughput_ratio"], row["bottleneck"]
    if ratio is None or limit is None:
        return []
    gateway_side, agent_side = "gateway" in limit or "other processes" in limit, "agent" in limit
    if gateway_side and agent_side:
        what = "the sealing cost of the gateway and of the agent together"
    elif gateway_side:
        what = "the gateway's own cost of sealing (and any other tenant of its core)"
    elif agent_side:
        what = (
            "mostly the agent's cost (opening the request, sealing the frames, signing the "
            "receipt) on the core it shares with the engine and wrk, not the gateway's"
        )
    else:
        what = "latency, not CPU (neither core was full)"
    said = (
        f"{mode} / {kind}: the max load was limited by {limit} (plain: "
        f"{row['plain_bottleneck']}), so the end-to-end ratio {ratio:.2f}x measures {what}"
    )
    gateway, agent = row["added_gateway_cpu_ms_per_request"], row["added_agent_cpu_ms_per_request"]
    capacity = row["gateway_capacity_ratio"]
    if gateway is not None and agent is not None and capacity is not None:
        said += (
            f"; sealing added {gateway:+.3f} ms of gateway CPU per request (its capacity ratio "
            f"{capacity:.2f}x) and {agent:+.3f} ms of agent CPU"
        )
    return [said]


def _run_notes(name: str, part: dict[str, Any], target_core: int | None) -> list[str]:
    said = []
    if part.get("errors"):
        said.append(
            f"**{name}: {part['errors']} errors** of {part['requests']} requests "
            f"(first: {part['first_bad'][:160] or 'socket'})"
        )
    if part.get("listen_overflows"):
        said.append(
            f"{name}: {part['listen_overflows']} connection attempts were dropped by a full "
            "listen queue on the machine during the run (the agent's is the likely one: "
            "ThreadingHTTPServer listens with a backlog of 5); each costs a SYN retransmission "
            "of 1 s or more: its p99 is inflated"
        )
    util = (part.get("cpu_util") or {}).get("gateway")
    busy = (part.get("core_busy") or {}).get(str(target_core))
    if util is not None and busy is not None and busy - util > 0.1:
        said.append(
            f"{name}: core {target_core} was also busy {busy - util:.2f} with processes other "
            "than the gateway (a shared machine): its numbers there are low"
        )
    return said


def observations(doc: dict[str, Any], quick: bool) -> list[str]:
    """What a reader must know to read the numbers: errors, what limited each saturating run
    (and so what its ratio measures), a shared machine, a short run."""
    said: list[str] = []
    results, cores = doc["results"], doc["cores"]
    target_core = cores["gateway"]
    for mode in MODES:
        for scenario, part in results.get(mode.name, {}).items():
            said += _run_notes(f"{mode.name} / {scenario}", part, target_core)
    for mode, kinds in doc["comparison"].items():
        for kind, row in kinds.items():
            said += _limit_note(mode, kind.replace("_", "-"), row)
    load = doc["machine"].get("load_before", "").split()
    if load and float(load[0]) > 0.5:
        said.append(
            f"load average {load[0]} before the run: other work on the machine may have "
            "shared the cores (see the busy columns)"
        )
    if "dirty" in str(doc["versions"].get("teeroute", "")):
        said.append("the working tree had uncommitted changes when this ran")
    if quick:
        said.append("quick profile: short runs, noisy numbers; not for the record")
    return said


def setup_notes(
    profile: dict[str, Any], pool_rate: int, kinds: tuple[Kind, ...] = KINDS
) -> list[str]:
    lengths = ", ".join(
        f"{k.label} {k.max_tokens}" + (" with usage" if k.stream else "") for k in kinds
    )
    return [
        "engine: the engine simulator (`--ttft-ms 0 --tokens-per-s 0`, one worker): answers "
        "as fast as it can, so the hops, not generation, are measured",
        "agent: `python -m teeroute_enclave` on the simulated TEE (a fresh root CA and chip "
        "key), its evidence verified against a fresh nonce (policy: simulated, no debug) and "
        "written as the pool's lease in the gateway's file config with its HPKE and signing "
        "keys, as the operator's sweeper would",
        "gateway: `teeroute gateway serve --workers 1` from a file config: one MinerPool "
        "(the agent), three Routes on it: `sim-plain` (sealing off), `sim-gateway` (sealing "
        "gateway), `sim-client` (sealing required); SQLite ledger, memory rate limiter with "
        "limits far above the load, one API key",
        "plain = gateway -> agent in clear -> engine; gateway-sealed = the client sends plain, "
        "the gateway seals to the enclave key, opens the sealed frames and verifies the "
        "receipt; client-sealed = REQUEST frames of the client's own session with the enclave "
        "(wire v2, opened through the gateway's `POST /v1/sessions`; Content-Type "
        "`application/vnd.teeroute.sealed.v2`), forwarded unopened, the chunks relayed, the "
        "receipt's gateway tag checked",
        f"client-sealed load: {pool_rate} distinct REQUEST frames per second of run, sealed "
        "just before it in a new client session (counters in order), sent in turn by wrk's "
        "`request()` hook, each once (the agent's replay window refuses a repeat); plain "
        "modes go through the same hook with a pool of one body, so wrk does the same per "
        "request",
        f"load: wrk, 1 thread; moderate = {MODERATE_CONNECTIONS} connections with a "
        f"{THINK_MS} ms think time each; max = {MAX_CONNECTIONS} connections, no think time; "
        "every 200 is checked (plain streams for `[DONE]`, whole answers for `usage`, sealed "
        "answers for the RECEIPT frame)",
        "requests: one short user message (e2e/bench/gateway.py's prompt, whose natural "
        "answer is 255 tokens, so an answer is min(max_tokens, 255) tokens long); max_tokens "
        f"per kind: {lengths}",
        f"each run {profile['run_s']} s, {profile['rounds']} round(s) (modes in turn per "
        "scenario, the order reversed in odd rounds; req/s and percentiles are the median over "
        "the rounds, CPU per request is over all of them), after "
        f"a {profile['warmup_s']} s warm-up per mode and kind at {MAX_CONNECTIONS} connections "
        "(it fills the gateway's pool of connections to the agent); CPU seconds from /proc of each "
        "process tree, busy time per core from /proc/stat",
        "the ledger (`ledger_usage` in the gateway's SQLite file) is read after the gateway "
        "stopped; before the load each mode's probe of each kind was checked end to end "
        "(same text as plain's of that kind; client-sealed frames opened and receipt verified "
        "by the client; `GET /v1/generation` says `valid` for the sealed probes)",
    ]


def write(out: Path, doc: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "sealed.json", out / "sealed.md"
    json_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(render(doc))
    return json_path, md_path
