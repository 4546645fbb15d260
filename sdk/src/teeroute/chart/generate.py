"""The chart's generated files, from the values model and crds/ (pure: text in, text out).

    values.yaml                  the defaults, each field's docstring as its comment
    values.schema.json           strict JSON schema: `additionalProperties: false` on every
                                 object, so a mistyped key fails `helm template`/`install`
    README.md                    the values table
    templates/crds/<crd>.yaml    each file of crds/ behind `crds.enabled`, kept with
                                 `crds.keep` (as cert-manager does)

`teeroute chart generate` writes them; `teeroute chart check` and tests/chart fail when the
chart differs from what this module writes.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import BaseModel

from teeroute.api import crdgen
from teeroute.chart import readme
from teeroute.chart.values import Values

Schema = dict[str, Any]
WIDTH = 96
CRD_DIR = "templates/crds"


def files() -> dict[str, str]:
    """Path inside the chart -> content, for every generated file."""
    out = {
        "values.yaml": values_yaml(),
        "values.schema.json": json.dumps(schema(), indent=2, sort_keys=True) + "\n",
        "README.md": readme.render(list(leaves(Values()))),
    }
    for name, content in crdgen.rendered().items():
        out[f"{CRD_DIR}/{name}"] = crd_template(name, content)
    return out


# -- values.schema.json ------------------------------------------------------------------


def schema() -> Schema:
    raw = Values.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    strict: Schema = _strict(_inline(raw, defs))
    strict["$schema"] = "http://json-schema.org/draft-07/schema#"
    return strict


def _inline(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline(merged, defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _strict(node: Any) -> Any:
    """Every object schema refuses unknown keys; maps keep their typed values."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("type") == "object" and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


# -- values.yaml -------------------------------------------------------------------------

HEADER = """\
# Values of the teeroute chart. Generated from sdk/src/teeroute/chart/values.py by
# `teeroute chart generate`: do not edit, change the model and regenerate.
# values.schema.json refuses unknown keys; README.md lists every value.
"""


def values_yaml() -> str:
    return HEADER + "\n".join(_model_lines(Values(), 0)) + "\n"


def _model_lines(model: BaseModel, indent: int) -> Iterator[str]:
    pad = " " * indent
    for index, (name, field) in enumerate(type(model).model_fields.items()):
        if index and indent == 0:
            yield ""
        for line in textwrap.wrap(_one_line(field.description), WIDTH - indent - 2):
            yield f"{pad}# {line}"
        key = field.alias or name
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield f"{pad}{key}:"
            yield from _model_lines(value, indent + 2)
        else:
            yield from _value_lines(key, _plain(value), pad)


def _value_lines(key: str, value: Any, pad: str) -> Iterator[str]:
    if isinstance(value, dict | list) and value:
        yield f"{pad}{key}:"
        block = yaml.safe_dump(value, default_flow_style=False, sort_keys=False)
        yield from (f"{pad}  {line}" for line in block.splitlines())
    else:
        yield f"{pad}{key}: {json.dumps(value)}"


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _one_line(text: str | None) -> str:
    if not text:
        raise ValueError("every chart value needs a description (a docstring)")
    return " ".join(text.split())


# -- the values, flattened (README table, the every-value-is-used test) -------------------


def leaves(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Any, str, str]]:
    """(dotted camelCase path, default, JSON type, description) of every leaf value of
    `model` (e.g. `Values()`): a scalar, a list or a map; nested models are walked into."""
    for name, field in type(model).model_fields.items():
        path = f"{prefix}{field.alias or name}"
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from leaves(value, path + ".")
        else:
            yield path, _plain(value), _type_name(value), _one_line(field.description)


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "number", str: "string", list: "list", dict: "map"}[
        type(value)
    ]


# -- CRD templates -----------------------------------------------------------------------

_CRD_METADATA = """\
metadata:
  name: {name}
  labels:
    {{{{- include "teeroute.labels" . | nindent 4 }}}}
  {{{{- if .Values.crds.keep }}}}
  annotations:
    helm.sh/resource-policy: keep
  {{{{- end }}}}
"""


def crd_template(file_name: str, content: str) -> str:
    """crds/<file_name> as a chart template: the same object, plus the chart's labels and,
    with crds.keep, the annotation that keeps it on uninstall."""
    if "{{" in content:
        raise ValueError(f"crds/{file_name} contains '{{{{': it would be read as a template")
    crd = yaml.safe_load(content)
    name = crd["metadata"]["name"]
    plain = f"metadata:\n  name: {name}\n"
    if set(crd["metadata"]) != {"name"} or content.count(plain) != 1:
        raise ValueError(f"crds/{file_name}: expected metadata with only a name")
    body = content[content.index("apiVersion:") :]
    return (
        f"# crds/{file_name}, generated by `teeroute chart generate`: do not edit.\n"
        "{{- if .Values.crds.enabled }}\n"
        + body.replace(plain, _CRD_METADATA.format(name=name))
        + "{{- end }}\n"
    )
