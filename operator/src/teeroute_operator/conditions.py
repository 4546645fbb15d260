"""Kubernetes-shaped conditions (pure): set one, keep lastTransitionTime unless it changes."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def set_condition(
    conditions: list[Obj],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    now: str,
    generation: int,
) -> list[Obj]:
    value = "Unknown" if status is None else ("True" if status else "False")
    previous = next((c for c in conditions if c.get("type") == type_), None)
    moved = previous is None or previous.get("status") != value
    updated = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now if moved or previous is None else previous["lastTransitionTime"],
        "observedGeneration": generation,
    }
    return [c for c in conditions if c.get("type") != type_] + [updated]


def is_true(conditions: list[Obj], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)
