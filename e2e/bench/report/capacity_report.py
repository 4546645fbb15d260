"""RESULTS.md's capacity model section: the formula, its inputs with their sources, and what
1.4 M tokens/s needs in each measured scenario (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from report import capacity, capacity_inputs
from report.sources import Source
from report.tables import table

HEAD = "## Capacity model: 1.4 M tokens/s"


def section(sources: Mapping[str, Source]) -> str:
    common = capacity_inputs.shared(sources)
    if common is None:
        return (
            f"{HEAD}\n\nNot computed: it needs `ledger.json`, `sweep.json` and "
            "`sealed-paced.json`, and one of them is not committed."
        )
    found = capacity_inputs.scenarios(sources, common)
    return "\n\n".join(
        (
            HEAD,
            "Chutes moves 100-120 B tokens a day (120 B / 86,400 s = "
            f"{capacity.tokens_per_s_of(capacity.CHUTES_TOKENS_PER_DAY):,.0f} tokens/s); the "
            "model asks what 1.4 M tokens/s would need if every token went through teeroute, "
            "counting every token as a streamed output token (the expensive kind for the gateway). "
            "Cores are 100 % busy cores of the benchmark machine (no headroom); agent cores run "
            "in the miners' enclaves, not on the network's own machines. `capacity.py` is the "
            "model, `capacity_inputs.py` reads its inputs.",
            "```\n" + capacity.FORMULA + "\n```",
            table(
                ("input", "value", "source"), [(i.name, i.value, i.source) for i in common.inputs]
            ),
            "CPU per request (c_gw gateway, c_agent enclave agent) and tokens per request (t), "
            "per scenario:\n\n"
            + "\n".join(f"- {shape}: {where}" for shape, where in capacity_inputs.SOURCES_OF_COSTS),
            table(
                (
                    "scenario",
                    "mode",
                    "t",
                    "requests/s",
                    "gateway cores",
                    "agent cores",
                    "ledger writes/s",
                    "PostgreSQL ledgers",
                    "endpoints",
                    "operator cores",
                ),
                [_row(s) for s in found],
            ),
            _reading(found),
        )
    )


def _row(s: capacity_inputs.Scenario) -> tuple[str, ...]:
    r = s.result
    return (
        s.shape,
        s.mode,
        f"{s.tokens_per_request:.0f}",
        f"{r.requests_per_s:,.0f}",
        f"{r.gateway_cores:.1f}",
        f"{r.agent_cores:.1f}",
        f"{r.ledger_writes_per_s:,.0f}",
        f"{r.ledger_instances:.1f}",
        f"{r.endpoints:,.0f}",
        f"{r.operator_cores:.3f}",
    )


def _reading(found: list[capacity_inputs.Scenario]) -> str:
    by = {(s.shape, s.mode): s.result for s in found}
    plain = by.get(("255-token streams, paced engine", "plain"))
    sealed = by.get(("255-token streams, paced engine", "gateway-sealed"))
    if plain is None or sealed is None:
        return ""
    operator = "under one core" if plain.operator_cores < 1 else "more than one core"
    return (
        f"Reading: with realistic streams (paced), 1.4 M tokens/s needs about "
        f"{plain.gateway_cores:.0f} gateway cores plain and {sealed.gateway_cores:.0f} "
        f"gateway-sealed, {plain.ledger_writes_per_s:,.0f} ledger writes/s "
        f"({plain.ledger_instances:.1f}x what one PostgreSQL gave here), and "
        f"{plain.operator_cores:.2f} operator cores for {plain.endpoints:,.0f} endpoints "
        f"({operator}, measured as input s says): the gateway's per-token path and the ledger "
        "are what must scale out."
    )
