"""A small Dockerfile reader for the equivalence test: the final stage's instructions."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def one(self, name: str) -> str | None:
        found = [args for instruction, args in self.instructions if instruction == name]
        assert len(found) <= 1, f"{name} appears {len(found)} times"
        return found[0] if found else None

    def all(self, name: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == name]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        instruction, _, args = whole.strip().partition(" ")
        found.append((instruction.upper(), args.strip()))
    return found


def stages(text: str) -> list[Stage]:
    found: list[Stage] = []
    for instruction, args in instructions(text):
        if instruction == "FROM":
            found.append(Stage(args))
        else:
            found[-1].instructions.append((instruction, args))
    return found


def exec_form(args: str | None) -> list[str]:
    return json.loads(args) if args is not None else []


def env_pairs(args: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for each in args:
        for word in shlex.split(each):
            name, _, value = word.partition("=")
            pairs.append((name, value))
    return pairs
