"""Building blocks shared by the API models: the base model, string types with the
patterns the apiserver enforces, durations, prices and Kubernetes-shaped conditions."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """camelCase on the wire, unknown fields refused, attribute docstrings as descriptions
    (they become the CRD's field descriptions, which `kubectl explain` shows)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        frozen=True,
    )


DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, examples=["30s", "5m", "1h30m"])]
"""A Go-style duration: 30s, 5m, 1h30m (no fractions, no days)."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> dt.timedelta:
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h30m)")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"([0-9]+)(ms|s|m|h)", text))
    return dt.timedelta(seconds=seconds)


PRICE_PATTERN = r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,9})?$"
Price = Annotated[str, Field(pattern=PRICE_PATTERN, examples=["0.15", "2"])]
"""A non-negative decimal amount as a string (the API conventions avoid floats)."""


def parse_price(text: str) -> Decimal:
    if not re.fullmatch(PRICE_PATTERN, text):
        raise ValueError(f"not a price: {text!r}")
    return Decimal(text)


TeeType = Literal["sev-snp", "tdx", "simulated"]
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Condition(ApiModel):
    """The standard Kubernetes condition shape (metav1.Condition)."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """Condition type in CamelCase, e.g. Ready."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: Annotated[
        str,
        Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
    ]
    """A CamelCase reason for the last transition, for machines."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """A human-readable explanation of the last transition."""
    last_transition_time: dt.datetime
    """When the status last changed."""
    observed_generation: Annotated[int, Field(ge=0)] = 0
    """The .metadata.generation the condition was set for."""


class ObjectMeta(ApiModel):
    """The parts of metadata the models read; the apiserver owns the rest."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    name: str = ""
    namespace: str = ""
    generation: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str = ""


def cel(
    rule: str, message: str, field_path: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """An `x-kubernetes-validations` entry (a CEL rule the apiserver checks)."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry
