"""The config file: the shipped example loads; mistakes are refused with the document and
field path; relative SQLite paths follow the file, not the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from teeroute_gateway.catalog import UNATTESTED, build_catalog
from teeroute_gateway.sources.file import ConfigInvalid, load

EXAMPLE = Path(__file__).parents[2] / "e2e" / "gateway" / "local.yaml"


def test_the_example_config_loads_into_a_catalog() -> None:
    config = load(EXAMPLE)
    assert config.settings.allow_unattested and config.settings.rate_limiter == "memory"
    assert config.settings.ledger == f"sqlite:///{EXAMPLE.parent / 'local-ledger.db'}"
    catalog = build_catalog(config.inventory)
    (endpoint,) = catalog.pools["default/local-sim"].endpoints
    assert (endpoint.url, endpoint.tee) == ("http://127.0.0.1:8000", UNATTESTED)
    assert catalog.models["sim-model"].context_length == 8192


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Nope\n", "document 1 (Nope): kind must be one of"),
        ("kind: GatewayConfig\nspec: {ledgr: x}\n", "spec.ledgr: Extra inputs are not permitted"),
        ("kind: GatewayConfig\nspec: {}\n---\nkind: GatewayConfig\n", "only one GatewayConfig"),
        ("kind: Route\nmetadata: {name: r}\nspec: {model: m}\n", "document 1 (Route)"),
        (
            "kind: MinerPool\nmetadata: {name: p}\nspec:\n  models: [{name: m}]\n"
            "  tee: {type: tdx}\n  pricing: {inputPerMillion: 'cheap', outputPerMillion: '1'}\n"
            "  endpoints: [{name: e, url: 'http://x'}]\n",
            "spec.pricing.inputPerMillion",
        ),
        ("a: [unclosed\n", "not YAML"),
    ],
)
def test_mistakes_name_the_document_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    with pytest.raises(ConfigInvalid) as raised:
        load(path)
    assert message in str(raised.value)
