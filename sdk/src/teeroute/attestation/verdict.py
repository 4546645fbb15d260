"""The outcome of verifying one piece of evidence: every check, by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["passed", "failed", "not_checked"]


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
