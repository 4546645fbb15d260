"""CustomResourceDefinitions generated from the API models (never written by hand).

`teeroute crds generate` writes them to crds/; a test fails when crds/ is stale. The models'
JSON schema is made structural, as the apiserver requires: references inlined, optional
fields unwrapped, `additionalProperties: false` dropped beside `properties` (the apiserver
prunes unknown fields instead), and object fields that default to a model get that model's
defaults as a whole (the apiserver validates a default, CEL rules included, as it stands).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from teeroute.api import minerpool, route
from teeroute.api.common import ApiModel

Schema = dict[str, Any]
_DROP = {"title", "examples"}


@dataclass(frozen=True)
class Column:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    spec: type[BaseModel]
    status: type[BaseModel]
    short_names: tuple[str, ...]
    columns: tuple[Column, ...]
    description: str


KINDS = (
    Kind(
        "MinerPool",
        "minerpools",
        minerpool.MinerPoolSpec,
        minerpool.MinerPoolStatus,
        ("mp", "pool"),
        (
            Column("Model", ".spec.models[0].name", description="First served model"),
            Column("TEE", ".spec.tee.type"),
            Column(
                "In/M",
                ".spec.pricing.inputPerMillion",
                description="Price per million input tokens",
            ),
            Column(
                "Out/M",
                ".spec.pricing.outputPerMillion",
                description="Price per million output tokens",
            ),
            Column("Cur", ".spec.pricing.currency", priority=1),
            Column("Ready", ".status.readyReplicas", "integer"),
            Column("Attested", ".status.attestedReplicas", "integer"),
            Column("Desired", ".status.desiredReplicas", "integer"),
            Column("Age", ".metadata.creationTimestamp", "date"),
        ),
        "A pool of miners serving models inside TEEs at a price.",
    ),
    Kind(
        "Route",
        "routes",
        route.RouteSpec,
        route.RouteStatus,
        ("rt",),
        (
            Column("Model", ".spec.model", description="Public model name"),
            Column("Strategy", ".spec.routing.sort"),
            Column("Eligible", ".status.eligibleBackends", "integer"),
            Column("Ready", '.status.conditions[?(@.type=="Ready")].status', priority=1),
            Column("Age", ".metadata.creationTimestamp", "date"),
        ),
        "A public model name and the MinerPools that may serve it.",
    ),
)


def crd(kind: Kind, group: str = "teeroute.dev", version: str = "v1alpha1") -> Schema:
    root: Schema = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": structural(kind.spec),
            "status": structural(kind.status),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": ["teeroute"],
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [_column(c) for c in kind.columns],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def _column(c: Column) -> Schema:
    out: Schema = {"name": c.name, "type": c.type, "jsonPath": c.json_path}
    if c.description:
        out["description"] = c.description
    if c.priority:
        out["priority"] = c.priority
    return out


def structural(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    defaults = _object_defaults(model)
    return _convert(raw, defs, defaults, model.__name__)


def _convert(
    node: Schema,
    defs: dict[str, Schema],
    defaults: dict[str, dict[str, Any]],
    name: str | None = None,
) -> Schema:
    if "$ref" in node:
        ref = node["$ref"].rsplit("/", 1)[1]
        merged = {
            **_convert(defs[ref], defs, defaults, ref),
            **{k: v for k, v in node.items() if k != "$ref"},
        }
        return _convert_keys(merged, defs, defaults)
    options = node.get("anyOf")
    if options:
        real = [o for o in options if o.get("type") != "null"]
        if len(real) == 1:
            rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
            if node.get("default") is not None:
                rest["default"] = node["default"]
            return {**_convert(real[0], defs, defaults), **_convert_keys(rest, defs, defaults)}
    out = _convert_keys(node, defs, defaults)
    if name in defaults:
        for prop, value in defaults[name].items():
            out["properties"][prop].setdefault("default", value)
    return out


def _convert_keys(
    node: Schema, defs: dict[str, Schema], defaults: dict[str, dict[str, Any]]
) -> Schema:
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP or (key == "additionalProperties" and not isinstance(value, dict)):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "description":
            out[key] = " ".join(value.split())
        elif key == "properties":
            out[key] = _properties(value, defs, defaults)
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value, defs, defaults)
        else:
            out[key] = value
    if "properties" in out or out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
    return out


def _properties(
    props: dict[str, Schema], defs: dict[str, Schema], defaults: dict[str, dict[str, Any]]
) -> Schema:
    out = {name: _convert(schema, defs, defaults) for name, schema in props.items()}
    conditions = out.get("conditions")
    if conditions and conditions.get("type") == "array":  # metav1.Condition lists merge by type
        conditions["x-kubernetes-list-type"] = "map"
        conditions["x-kubernetes-list-map-keys"] = ["type"]
    return out


def _object_defaults(root: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """For each model reachable from `root`: fields whose default comes from a factory (not
    visible in the JSON schema), as the apiserver should default them."""
    found: dict[str, dict[str, Any]] = {}
    for model in _models(root):
        entries: dict[str, Any] = {}
        for field_name, info in model.model_fields.items():
            if info.default_factory is None or field_name in ("status", "metadata"):
                continue
            value = info.default_factory()  # type: ignore[call-arg]
            alias = info.alias or field_name
            entries[alias] = (
                value.model_dump(by_alias=True, exclude_none=True, mode="json")
                if isinstance(value, BaseModel)
                else value
            )
        found[model.__name__] = entries
    return found


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and issubclass(item, ApiModel):
            if item in seen:
                continue
            seen.append(item)
            stack += [f.annotation for f in item.model_fields.values()]
        else:
            stack += list(typing.get_args(item))
    return seen


def render(kind: Kind) -> str:
    header = (
        "# Generated from the models in sdk/src/teeroute/api by `teeroute crds generate`.\n"
        "# Do not edit: change the models and regenerate.\n"
    )
    return header + yaml.safe_dump(crd(kind), sort_keys=False, width=100)


def rendered() -> dict[str, str]:
    """File name -> content of every CRD."""
    return {f"teeroute.dev_{k.plural}.yaml": render(k) for k in KINDS}
