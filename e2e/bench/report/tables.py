"""Markdown tables, and the summary of a result file whose shape RESULTS.md does not know.

A new benchmark's file (top-level `bench`, `date`, `commit`, `machine`, then its data) is
summarised without code for it: its top-level numbers and words as one table, each list of flat
objects as a table, each object of flat objects as a table keyed by name. Deeper nesting is left
to the benchmark's own `.md`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from report.verdicts import number

META_KEYS = frozenset(
    {"bench", "benchmark", "date", "when", "commit", "machine", "checks", "verdicts", "targets"}
)
MAX_ROWS = 40


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cell(value: object) -> str:
    text = number(value) if isinstance(value, int | float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def summary(data: Mapping[str, Any]) -> str:
    parts = []
    scalars = list(_fields(data))
    if scalars:
        parts.append(table(("field", "value"), scalars))
    for key, value in data.items():
        if key in META_KEYS:
            continue
        rendered = _nested(key, value)
        if rendered:
            parts.append(rendered)
    return "\n\n".join(parts) if parts else "(no numbers in this file)"


def _fields(data: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Iterable[tuple[str, str]]:
    """Top-level numbers and words; the numbers and words of objects two levels down as
    `key.field`; lists of numbers or words joined (the first 10)."""
    for key, value in data.items():
        if key in META_KEYS and not prefix:
            continue
        name = f"{prefix}{key}"
        if _scalar(value):
            yield name, _value(value)
        elif isinstance(value, Mapping) and depth < 2 and not (depth == 0 and _table(value)):
            yield from _fields(value, f"{name}.", depth + 1)
        elif isinstance(value, list) and all(_scalar(v) for v in value):
            yield name, _joined(value)


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _flat(value: object) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(_scalar(v) for v in value.values())


def _table(value: object) -> bool:
    """An object of objects: a table, one row per key (not `key.field` lines)."""
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value.values())
    )


def _nested(key: str, value: object) -> str:
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        return f"`{key}`:\n\n" + _records(None, value)
    if isinstance(value, Mapping) and _table(value):
        return f"`{key}`:\n\n" + _records(key, [{key: k, **v} for k, v in value.items()])
    return ""


def _records(first: str | None, records: Sequence[Mapping[str, Any]]) -> str:
    """One row per record: its numbers and words, flat objects and lists of them inline; each
    list of flat objects inside the records as a table of its own, rows led by their record's
    first word."""
    columns: list[str] = [first] if first else []
    inner: list[str] = []
    for record in records:
        for k, v in record.items():
            if _objects(v):
                inner += [k] if k not in inner else []
            elif k not in columns and _cell(v) is not None:
                columns.append(k)
    rows = [[_cell(r.get(c)) or "" for c in columns] for r in records[:MAX_ROWS]]
    parts = [table(columns, rows) + _more(len(records))]
    parts += [_inner(key, records) for key in inner]
    return "\n\n".join(parts)


def _objects(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(_flat(v) for v in value)


def _cell(value: object) -> str | None:
    """A record's field as one cell, or None when it does not fit in one."""
    if _scalar(value):
        return _value(value)
    if isinstance(value, Mapping) and _flat(value):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    if isinstance(value, list) and all(_scalar(v) for v in value):
        return _joined(value)
    if isinstance(value, Mapping) and not value:
        return "—"
    return None


def _inner(key: str, records: Sequence[Mapping[str, Any]]) -> str:
    rows: list[dict[str, Any]] = []
    for record in records:
        label = next((str(v) for v in record.values() if isinstance(v, str)), "")
        rows += [{"of": label, **item} for item in record.get(key) or []]
    return f"`{key}`:\n\n" + _records(None, rows)


def _more(count: int) -> str:
    more = count - MAX_ROWS
    return f"\n\n… and {more} more rows in the file." if more > 0 else ""


def _joined(values: list[Any]) -> str:
    """A list of numbers or words in one cell: the first 10, "none" for an empty list."""
    if not values:
        return "none"
    more = f" … ({len(values)} in all)" if len(values) > 10 else ""
    return ", ".join(_value(v) for v in values[:10]) + more


def _value(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return number(value) if isinstance(value, int | float) else str(value)
