"""The outcome of verifying one piece of evidence: every check, by name.

A check is passed, failed (with what was seen) or not checked (no policy or collateral for
it). `required` names the checks the caller's policy asked for: a required check that was not
checked, or that is missing altogether, becomes a failed one when the Verdict is built, so a
"not checked" can never count as passed for a check the policy demanded, on any TEE type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["passed", "failed", "not_checked"]
REQUIRED_BUT_UNCHECKED = "required by the policy but not checked"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str = ""

    @classmethod
    def of(cls, name: str, ok: bool, detail: str = "") -> Check:
        return cls(name, "passed" if ok else "failed", detail)


@dataclass(frozen=True)
class Verdict:
    tee: str
    checks: tuple[Check, ...]
    claims: dict[str, Any] = field(default_factory=dict)
    """What the evidence says (measurement, TCB, chip id, …), for records and display."""
    required: frozenset[str] = frozenset()
    """Checks the policy asked for: each must be passed (not checked or missing: failed)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "checks", enforce_required(self.checks, self.required))

    @property
    def ok(self) -> bool:
        return all(c.status != "failed" for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "failed"]

    def status_of(self, name: str) -> Status:
        for check in self.checks:
            if check.name == name:
                return check.status
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "tee": self.tee,
            "ok": self.ok,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
            "claims": self.claims,
        }


def enforce_required(checks: tuple[Check, ...], required: frozenset[str]) -> tuple[Check, ...]:
    """`checks` with every required one that was not checked turned into a failure naming
    why, and a failure appended for every required one that is missing."""
    judged = tuple(
        Check(c.name, "failed", f"{REQUIRED_BUT_UNCHECKED}: {c.detail}")
        if c.name in required and c.status == "not_checked"
        else c
        for c in checks
    )
    present = {c.name for c in checks}
    missing = tuple(
        Check(name, "failed", f"{REQUIRED_BUT_UNCHECKED}: the verifier has no such check")
        for name in sorted(required - present)
    )
    return judged + missing
