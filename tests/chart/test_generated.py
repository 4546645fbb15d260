"""The chart's generated files are what the values model and crds/ give, and the chart's CRD
templates render to exactly the objects in crds/."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from teeroute.chart import generate
from teeroute.chart.values import Values
from tests.chart.helm import CHART, PRESETS, ROOT, Helm, preset_values


def test_generated_files_are_current() -> None:
    stale = [
        name
        for name, content in generate.files().items()
        if not (CHART / name).is_file() or (CHART / name).read_text() != content
    ]
    assert stale == [], f"{stale} are stale: run `teeroute chart generate`"


def test_values_yaml_holds_the_model_defaults() -> None:
    assert Values.model_validate(yaml.safe_load((CHART / "values.yaml").read_text())) == Values()


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of values: maps merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        both_maps = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _merged(base[key], value) if both_maps else value
    return out


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_are_valid_values(preset: str) -> None:
    preset_file = yaml.safe_load((CHART / f"values-{preset}.yaml").read_text())
    Values.model_validate(_merged(Values().model_dump(by_alias=True), preset_file))


def test_schema_refuses_unknown_keys_on_every_object() -> None:
    def walk(node: Any, path: str) -> list[str]:
        if isinstance(node, list):
            return [p for i, n in enumerate(node) for p in walk(n, f"{path}[{i}]")]
        if not isinstance(node, dict):
            return []
        open_object = node.get("type") == "object" and node.get("additionalProperties") in (
            None,
            True,
        )
        return [path] * open_object + [p for k, v in node.items() for p in walk(v, f"{path}.{k}")]

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert walk(schema, "$") == []


def test_every_value_has_a_description() -> None:
    missing = [path for path, _, _, text in generate.leaves(Values()) if len(text) < 10]
    assert missing == []


def _without_chart_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in crd["metadata"].items() if k not in ("labels", "annotations")}
    return {**crd, "metadata": metadata}


def test_crd_templates_render_to_the_crds_directory(helm: Helm) -> None:
    rendered = {
        o["metadata"]["name"]: o
        for o in helm.objects("kind", *preset_values("kind"))
        if o["kind"] == "CustomResourceDefinition" and o["spec"]["group"] == "teeroute.dev"
    }
    expected = {
        crd["metadata"]["name"]: crd
        for crd in (yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.yaml")))
    }
    assert {name: _without_chart_metadata(o) for name, o in rendered.items()} == expected


@pytest.mark.parametrize(
    ("crds", "kinds", "kept"),
    [
        ({"enabled": True, "keep": True}, 4, True),
        ({"enabled": True, "keep": False}, 4, False),
        ({"enabled": False, "keep": True}, 0, False),
    ],
)
def test_crds_enabled_and_keep(helm: Helm, crds: dict[str, bool], kinds: int, kept: bool) -> None:
    found = [
        o
        for o in helm.objects("kind", *preset_values("kind"), {"crds": crds})
        if o["kind"] == "CustomResourceDefinition"
    ]
    assert len(found) == kinds
    for crd in found:
        annotations = crd["metadata"].get("annotations") or {}
        assert (annotations.get("helm.sh/resource-policy") == "keep") is kept
