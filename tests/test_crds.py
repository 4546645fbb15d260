"""crds/ holds exactly what the models generate."""

from __future__ import annotations

from pathlib import Path

import yaml

from teeroute.api import crdgen

ROOT = Path(__file__).resolve().parents[1]


def test_crds_directory_is_up_to_date() -> None:
    files = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert files == crdgen.rendered(), "crds/ is stale: run `teeroute crds generate`"


def test_every_schema_field_has_a_description() -> None:
    def walk(node: dict, path: str) -> list[str]:
        missing = [] if "description" in node or path.count(".") < 2 else [path]
        for name, child in (node.get("properties") or {}).items():
            missing += walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict) and node["items"].get("properties"):
            missing += [m for m in walk(node["items"], f"{path}[]") if m != f"{path}[]"]
        return missing

    for kind in crdgen.KINDS:
        schema = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in ("spec", "status"):
            assert walk(schema["properties"][part], f"{kind.kind}.{part}") == []


def test_schemas_are_structural() -> None:
    def walk(node: dict, path: str) -> None:
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "$ref" not in node and "anyOf" not in node, path
        for name, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    for content in crdgen.rendered().values():
        crd = yaml.safe_load(content)
        walk(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], crd["metadata"]["name"])
