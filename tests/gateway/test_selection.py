"""Routing decisions: OpenRouter's provider object, the Route's defaults and our TEE constraints."""

from __future__ import annotations

import collections
import datetime as dt
from typing import Any

import pytest

from teeroute_gateway.errors import GatewayError
from teeroute_gateway.health import HealthBook
from teeroute_gateway.provider import parse_provider
from teeroute_gateway.selection import plan
from teeroute_gateway.speed import Sample
from tests.gateway.builders import catalog, context, endpoint, pool, route

CHEAP, MID, DEAR = pool("cheap", "0.5", "0.5"), pool("mid", "1", "1"), pool("dear", "1.5", "1.5")
THREE = [CHEAP, MID, DEAR]


def pools_of(
    provider: dict[str, Any] | None, pools: list[Any] = THREE, seed: int = 7, **route_spec: Any
) -> list[str]:
    cat = catalog(pools, route([p.metadata.name for p in pools], **route_spec))
    found = plan([cat.models["m"]], parse_provider(provider), None, context(seed=seed))
    return [c.backend.pool.name for c in found]


@pytest.mark.parametrize(
    ("case", "provider", "route_spec", "expected"),
    [
        (
            "order is followed, then the rest by price",
            {"order": ["dear", "mid"], "sort": "price"},
            {},
            ["dear", "mid", "cheap"],
        ),
        (
            "order without fallbacks keeps only the order",
            {"order": ["mid"], "allow_fallbacks": False},
            {},
            ["mid"],
        ),
        ("only is an allow-list", {"only": ["mid", "dear"], "sort": "price"}, {}, ["mid", "dear"]),
        ("ignore is a deny-list", {"ignore": ["cheap"], "sort": "price"}, {}, ["mid", "dear"]),
        ("names may carry the namespace", {"only": ["ns/dear"]}, {}, ["dear"]),
        ("sort=price is cheapest first", {"sort": "price"}, {}, ["cheap", "mid", "dear"]),
        (
            "max_price is a hard filter",
            {"max_price": {"prompt": 1, "completion": 1}, "sort": "price"},
            {},
            ["cheap", "mid"],
        ),
        (
            "the route's max price filters too",
            {"sort": "price"},
            {"routing": {"maxPrice": {"outputPerMillion": "0.5"}}},
            ["cheap"],
        ),
        ("the route's fallback order leads", None, {"routing": {"fallbackOrder": ["dear"]}}, None),
        (
            "fallbacks off keeps the first pool only",
            {"allow_fallbacks": False, "sort": "price"},
            {},
            ["cheap"],
        ),
        (
            "the route may turn fallbacks off",
            {"sort": "price"},
            {"routing": {"allowFallbacks": False}},
            ["cheap"],
        ),
    ],
)
def test_provider_object(
    case: str,
    provider: dict[str, Any] | None,
    route_spec: dict[str, Any],
    expected: list[str] | None,
) -> None:
    got = pools_of(provider, **route_spec)
    if expected is None:  # fallback order: dear first, the rest in any order
        assert got[0] == "dear" and sorted(got) == ["cheap", "dear", "mid"], case
    else:
        assert got == expected, case


@pytest.mark.parametrize(
    ("case", "provider", "status", "code"),
    [
        ("only matches nothing", {"only": ["nobody"]}, 404, "no_provider_matches"),
        ("everything ignored", {"ignore": ["cheap", "mid", "dear"]}, 404, "no_provider_matches"),
        (
            "nobody under max_price",
            {"max_price": {"prompt": 0.1}},
            404,
            "no_provider_within_max_price",
        ),
        (
            "order names nobody and no fallbacks",
            {"order": ["nobody"], "allow_fallbacks": False},
            404,
            "no_provider_matches",
        ),
        ("no pool with the requested TEE", {"tee": ["tdx"]}, 404, "no_provider_matches"),
    ],
)
def test_filters_that_leave_nothing_say_why(
    case: str, provider: dict[str, Any], status: int, code: str
) -> None:
    with pytest.raises(GatewayError) as raised:
        pools_of(provider)
    assert (raised.value.status, raised.value.code) == (status, code), case


@pytest.mark.parametrize(
    ("provider", "param"),
    [
        ({"sort": "fastest"}, "provider.sort"),
        ({"order": "cheap"}, "provider.order"),
        ({"allow_fallbacks": "no"}, "provider.allow_fallbacks"),
        ({"max_price": {"prompt": -1}}, "provider.max_price.prompt"),
        ({"max_price": {"completion": "lots"}}, "provider.max_price.completion"),
        ({"tee": ["sgx"]}, "provider.tee"),
        ({"max_attestation_age": "soon"}, "provider.max_attestation_age"),
        ("cheap", "provider"),
    ],
)
def test_malformed_provider_objects_name_the_field(provider: Any, param: str) -> None:
    with pytest.raises(GatewayError) as raised:
        parse_provider(provider)
    assert (raised.value.status, raised.value.param) == (400, param)


def test_unknown_openrouter_fields_are_accepted() -> None:
    prefs = parse_provider(
        {"data_collection": "deny", "zdr": True, "quantizations": ["fp8"], "sort": "price"}
    )
    assert prefs.sort == "price"


def test_default_is_random_weighted_by_inverse_price_squared() -> None:
    firsts = collections.Counter(pools_of(None, seed=seed)[0] for seed in range(3000))
    # weights 1/1², 1/2², 1/3² (blended prices 1, 2, 3): shares 36/49, 9/49, 4/49
    assert firsts["cheap"] / 3000 == pytest.approx(36 / 49, abs=0.03)
    assert firsts["mid"] / 3000 == pytest.approx(9 / 49, abs=0.03)
    assert firsts["dear"] / 3000 == pytest.approx(4 / 49, abs=0.03)


def test_weight_zero_pools_are_fallbacks_only() -> None:
    cat = catalog(THREE, route([{"pool": "cheap", "weight": 0}, "mid", "dear"]))
    for seed in range(50):
        found = plan([cat.models["m"]], parse_provider(None), None, context(seed=seed))
        assert found[-1].backend.pool.name == "cheap"


def _endpoints(**kw: Any) -> dict[str, list[Any]]:
    return {"ns/mid": [endpoint("mid", **kw)]}


@pytest.mark.parametrize(
    ("case", "endpoint_kw", "provider", "routable"),
    [
        ("fresh evidence", {}, None, True),
        (
            "expired lease",
            {"age": dt.timedelta(minutes=5), "ttl": dt.timedelta(minutes=4)},
            None,
            False,
        ),
        (
            "lease ends exactly now",
            {"age": dt.timedelta(minutes=4), "ttl": dt.timedelta(minutes=4)},
            None,
            False,
        ),
        (
            "older than the route's max age (10m)",
            {"age": dt.timedelta(minutes=11), "ttl": dt.timedelta(minutes=20)},
            None,
            False,
        ),
        (
            "older than the request's max age",
            {"age": dt.timedelta(minutes=2)},
            {"max_attestation_age": "1m"},
            False,
        ),
        (
            "within the request's max age",
            {"age": dt.timedelta(seconds=30)},
            {"max_attestation_age": 60},
            True,
        ),
        ("TEE not allowed by the request", {"tee": "sev-snp"}, {"tee": ["tdx"]}, False),
        ("TEE allowed by the request", {"tee": "tdx"}, {"tee": ["tdx"]}, True),
    ],
)
def test_attestation_gates_every_request(
    case: str, endpoint_kw: dict[str, Any], provider: Any, routable: bool
) -> None:
    cat = catalog([MID], route(["mid"]), _endpoints(**endpoint_kw))
    try:
        found = plan([cat.models["m"]], parse_provider(provider), None, context())
    except GatewayError as exc:
        assert not routable, f"{case}: {exc}"
        # the request's own narrowing: 404 (a retry cannot help); the route's: 503
        assert exc.code == ("no_provider_matches" if provider else "no_attested_endpoint"), case
    else:
        assert routable and [c.endpoint.key for c in found] == ["ns/mid/e0"], case


def test_the_route_decides_which_tees_are_allowed() -> None:
    strict = route(["mid"], constraints={"allowedTee": ["sev-snp"]})
    cat = catalog([MID], strict, _endpoints(tee="simulated"))
    with pytest.raises(GatewayError):
        plan([cat.models["m"]], parse_provider(None), None, context())


def test_unattested_endpoints_need_the_explicit_setting() -> None:
    from teeroute_gateway.catalog import UNATTESTED, Endpoint

    bare = Endpoint(key="ns/mid/e0", pool="ns/mid", url="http://127.0.0.1:1", tee=UNATTESTED)
    cat = catalog([MID], route(["mid"]), {"ns/mid": [bare]})
    with pytest.raises(GatewayError):
        plan([cat.models["m"]], parse_provider(None), None, context())
    assert plan([cat.models["m"]], parse_provider(None), None, context(allow_unattested=True))


def test_ejected_endpoints_go_last_and_retries_visit_other_pools_first() -> None:
    two = {
        "ns/cheap": [endpoint("cheap", "a"), endpoint("cheap", "b")],
        "ns/mid": [endpoint("mid", "a")],
    }
    cat = catalog([CHEAP, MID], route(["cheap", "mid"]), two)
    health = HealthBook()
    entry = health.entry("ns/cheap/a", "ns/cheap")
    entry.ejected_until = 2000.0
    found = plan([cat.models["m"]], parse_provider({"sort": "price"}), None, context(health))
    assert [c.endpoint.key for c in found] == ["ns/cheap/b", "ns/mid/a", "ns/cheap/a"]


def test_session_id_pins_one_endpoint_while_the_set_is_unchanged() -> None:
    many = {"ns/mid": [endpoint("mid", f"e{i}") for i in range(8)]}
    cat = catalog([MID], route(["mid"]), many)
    picks = {
        plan([cat.models["m"]], parse_provider(None), "conv-42", context(seed=s))[0].endpoint.key
        for s in range(40)
    }
    assert len(picks) == 1
    others = {
        plan([cat.models["m"]], parse_provider(None), f"conv-{i}", context())[0].endpoint.key
        for i in range(40)
    }
    assert len(others) > 3  # different sessions spread out


def test_models_fallback_appends_the_next_models_candidates() -> None:
    first = catalog([CHEAP], route(["cheap"]))
    second_route = route(["dear"], model="m2")
    second = catalog([DEAR], second_route)
    found = plan([first.models["m"], second.models["m2"]], parse_provider(None), None, context())
    assert [(c.model.name, c.backend.pool.name) for c in found] == [("m", "cheap"), ("m2", "dear")]


def test_soft_preferences_reorder_but_never_exclude() -> None:
    health = HealthBook()
    for key, ttft in (("ns/cheap/e0", 900.0), ("ns/mid/e0", 50.0)):
        for _ in range(5):
            health.observe(health.entry(key, key.rsplit("/", 1)[0]), Sample(1000.0, 1, ttft))
    cat = catalog([CHEAP, MID], route(["cheap", "mid"]))
    found = plan(
        [cat.models["m"]],
        parse_provider({"sort": "price", "preferred_max_latency": 0.5}),
        None,
        context(health),
    )
    assert [c.backend.pool.name for c in found] == ["mid", "cheap"]


def test_selector_routes_pick_pools_by_label() -> None:
    labelled = [pool("a", labels={"tier": "gold"}), pool("b", labels={"tier": "silver"})]
    the_route = route(None, selector={"matchLabels": {"tier": "gold"}})
    cat = catalog(labelled, the_route)
    assert [b.pool.name for b in cat.models["m"].backends] == ["a"]


def test_pools_in_another_currency_are_not_billed_in_ours() -> None:
    eur = pool("eur", currency="EUR")
    cat = catalog([eur], route(["eur"]))
    with pytest.raises(GatewayError) as raised:
        plan([cat.models["m"]], parse_provider(None), None, context())
    assert raised.value.code == "no_provider_within_max_price"
