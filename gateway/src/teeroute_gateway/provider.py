"""OpenRouter's request-level `provider` object, plus teeroute's own constraints.

Clients send it unchanged from OpenRouter code: `order`, `only`, `ignore`, `allow_fallbacks`,
`sort`, `max_price`, `preferred_min_throughput`, `preferred_max_latency`. Fields we do not act
on (`require_parameters`, `data_collection`, `zdr`, `quantizations`, …) are accepted and
ignored, as OpenRouter clients expect. Our additions: `tee` (allowed TEE types) and
`max_attestation_age` (a duration such as "2m", or seconds).

A provider is named by its pool: `name` or `namespace/name`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from teeroute.api.common import parse_duration
from teeroute_gateway.errors import BadRequest

SORTS = ("price", "latency", "throughput")
TEE_TYPES = ("sev-snp", "tdx", "simulated", "none")


@dataclass(frozen=True, slots=True)
class ProviderPrefs:
    order: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    allow_fallbacks: bool = True
    sort: str | None = None
    max_prompt_price: Decimal | None = None
    """USD per million input tokens (hard filter)."""
    max_completion_price: Decimal | None = None
    preferred_min_throughput: float | None = None
    """Tokens/s (soft: slower endpoints go to the back)."""
    preferred_max_latency: float | None = None
    """Seconds to first token (soft)."""
    tee: tuple[str, ...] | None = None
    max_attestation_age: dt.timedelta | None = None


DEFAULT = ProviderPrefs()


def parse_provider(raw: Any) -> ProviderPrefs:
    if raw is None:
        return DEFAULT
    if not isinstance(raw, dict):
        raise BadRequest("provider must be an object", param="provider")
    max_price = _max_price(raw.get("max_price"))
    return ProviderPrefs(
        order=_names(raw.get("order"), "order") or (),
        only=_names(raw.get("only"), "only"),
        ignore=_names(raw.get("ignore"), "ignore") or (),
        allow_fallbacks=_bool(raw.get("allow_fallbacks", True), "allow_fallbacks"),
        sort=_sort(raw.get("sort")),
        max_prompt_price=max_price[0],
        max_completion_price=max_price[1],
        preferred_min_throughput=_number(
            raw.get("preferred_min_throughput"), "preferred_min_throughput"
        ),
        preferred_max_latency=_number(raw.get("preferred_max_latency"), "preferred_max_latency"),
        tee=_tee(raw.get("tee")),
        max_attestation_age=_age(raw.get("max_attestation_age")),
    )


def _names(value: Any, field: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadRequest(
            f"provider.{field} must be a list of provider names", param=f"provider.{field}"
        )
    return tuple(value)


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"provider.{field} must be true or false", param=f"provider.{field}")
    return value


def _sort(value: Any) -> str | None:
    if isinstance(value, dict):  # OpenRouter's newer form: {"by": "price", "partition": ...}
        value = value.get("by")
    if value is None or value in SORTS:
        return str(value) if value is not None else None
    raise BadRequest(f"provider.sort must be one of {', '.join(SORTS)}", param="provider.sort")


def _number(value: Any, field: str) -> float | None:
    if isinstance(value, dict):  # percentile form {"p50": x, ...}: take the median's bound
        value = value.get("p50", next(iter(value.values()), None))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadRequest(
            f"provider.{field} must be a non-negative number", param=f"provider.{field}"
        )
    return float(value)


def _max_price(value: Any) -> tuple[Decimal | None, Decimal | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise BadRequest("provider.max_price must be an object", param="provider.max_price")
    return _price(value.get("prompt"), "prompt"), _price(value.get("completion"), "completion")


def _price(value: Any, field: str) -> Decimal | None:
    if value is None:
        return None
    param = f"provider.max_price.{field}"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"{param} must be a number (USD per million tokens)", param=param)
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise BadRequest(
            f"{param} must be a number (USD per million tokens)", param=param
        ) from None
    if not price.is_finite() or price < 0:
        raise BadRequest(f"{param} must be a non-negative number", param=param)
    return price


def _tee(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(v in TEE_TYPES for v in value):
        raise BadRequest(
            f"provider.tee must list TEE types of {', '.join(TEE_TYPES)}", param="provider.tee"
        )
    return tuple(value)


def _age(value: Any) -> dt.timedelta | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return dt.timedelta(seconds=value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            pass
    raise BadRequest(
        "provider.max_attestation_age must be a duration such as 90s or 5m, or seconds",
        param="provider.max_attestation_age",
    )
