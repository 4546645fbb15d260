"""Hypothesis strategies for JSON: any value, and a valid document with one member changed."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=16,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every member and item path in a JSON value (the value itself as ())."""
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


@st.composite
def changed(draw: st.DrawFn, doc: dict[str, Any], values: st.SearchStrategy[Any] = VALUES) -> Any:
    """`doc` with one member replaced (by any JSON value), removed, or one added."""
    out = copy.deepcopy(doc)
    path = draw(st.sampled_from(_paths(out)[1:]))
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    action = draw(st.sampled_from(("replace", "remove", "add")))
    if action == "replace":
        parent[path[-1]] = draw(values)
    elif action == "remove":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=12))] = draw(values)
    else:
        parent.append(draw(values))
    return out


@st.composite
def deep(draw: st.DrawFn, max_depth: int = 5000) -> bytes:
    """JSON nested past the interpreter's recursion limit (1000), alone or as a member's
    value: a short body that makes a recursive parser raise RecursionError."""
    depth = draw(st.integers(1, max_depth))
    nest = draw(st.sampled_from((b"[", b'{"a":'))) * depth
    return draw(st.sampled_from((nest, b'{"v":' + nest, b'{"v":2,"x":' + nest + b"}")))
