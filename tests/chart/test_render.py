"""The chart renders, lints and validates its values: each preset renders and passes
`helm lint --strict`; a mistyped key or a missing required value fails with a clear message;
RBAC has no wildcard and no Secret access; every pod is restricted; two renders are equal."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.chart.helm import CHART, GATEWAY_KEY, PRESETS, Helm, HelmFailed, pod_specs, preset_values

FORBIDDEN_IN_TEMPLATES = (
    "lookup",
    "randAlpha",
    "randNumeric",
    "randAscii",
    "uuidv4",
    "genPrivateKey",
    "genCA",
    "now",
    "helm.sh/hook",
)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_renders(helm: Helm, preset: str) -> None:
    kinds = {o["kind"] for o in helm.objects(preset, *preset_values(preset))}
    assert {"Deployment", "ClusterRole", "Service", "NetworkPolicy"} <= kinds


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_passes_strict_lint(helm: Helm, preset: str) -> None:
    out = helm.run("lint", "--strict", str(CHART), *helm.value_args(preset, *preset_values(preset)))
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    ("typo", "named"),
    [
        ({"operatr": {"replicas": 2}}, "'operatr' not allowed"),
        ({"gateway": {"ledger": {"tpye": "sqlite"}}}, "'tpye' not allowed"),
        ({"gateway": {"tolerations": [{"keyy": "gpu"}]}}, "'keyy' not allowed"),
        ({"gateway": {"ledger": {"type": "mysql"}}}, "gateway/ledger/type"),
        ({"operator": {"gatewayKeys": ["not base64"]}}, "gatewayKeys"),
    ],
)
def test_values_typo_fails_the_schema(helm: Helm, typo: dict[str, Any], named: str) -> None:
    with pytest.raises(HelmFailed, match=re.escape(named)):
        helm.template("kind", *preset_values("kind"), typo)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"operator": {"releaseKey": {"existingSecret": ""}}},
            "operator.releaseKey.existingSecret is required",
        ),
        ({"gateway": {"operatorKey": ""}}, "gateway.operatorKey is required"),
        ({"simulatedTee": {"rootPem": ""}}, "simulatedTee.enabled needs simulatedTee.rootPem"),
        ({"operator": {"gatewayKeys": []}}, "operator.gatewayKeys is empty"),
        ({"gateway": {"replicas": 2}}, "sqlite serves one gateway replica"),
        (
            {"gateway": {"ledger": {"type": "postgresql"}}},
            "needs gateway.ledger.postgresql.existingSecret",
        ),
        ({"gateway": {"redis": {"enabled": True}}}, "needs gateway.redis.url.existingSecret"),
    ],
)
def test_missing_required_value_fails_naming_it(
    helm: Helm, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmFailed, match=re.escape(message)):
        helm.template("kind", *preset_values("kind"), values)


def test_required_values_are_not_needed_without_the_gateway(helm: Helm) -> None:
    objects = helm.objects(
        "kind", *preset_values("kind"), {"gateway": {"enabled": False, "operatorKey": ""}}
    )
    assert not [o for o in objects if "gateway" in o["metadata"]["name"]]


def _rbac_rules(preset: str, helm: Helm) -> list[tuple[str, dict[str, Any]]]:
    values = [*preset_values(preset), {"operator": {"replicas": 2}}]
    return [
        (o["metadata"]["name"], rule)
        for o in helm.objects(preset, *values)
        if o["kind"] in ("ClusterRole", "Role")
        for rule in o["rules"]
    ]


@pytest.mark.parametrize("preset", PRESETS)
def test_no_rbac_rule_has_a_wildcard(helm: Helm, preset: str) -> None:
    rules = _rbac_rules(preset, helm)
    assert rules
    wild = [
        (name, rule)
        for name, rule in rules
        if any(
            "*" in item
            for part in ("apiGroups", "resources", "verbs", "resourceNames")
            for item in rule.get(part, [])
        )
    ]
    assert wild == []


@pytest.mark.parametrize("preset", PRESETS)
def test_no_rbac_rule_reaches_secrets(helm: Helm, preset: str) -> None:
    """docs/threat-model.md hole 7: the operator gets no cluster-wide Secret access (miner
    namespaces grant it by name), and the gateway none at all."""
    assert [r for _, r in _rbac_rules(preset, helm) if "secrets" in r["resources"]] == []


def test_peering_rbac_and_object_only_with_several_operators(helm: Helm) -> None:
    def peering(replicas: int) -> tuple[bool, bool, str | None]:
        objects = helm.objects("kind", *preset_values("kind"), {"operator": {"replicas": replicas}})
        role = next(
            o for o in objects if o["kind"] == "ClusterRole" and "operator" in o["metadata"]["name"]
        )
        deployment = next(
            o for o in objects if o["kind"] == "Deployment" and "operator" in o["metadata"]["name"]
        )
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        return (
            any(r["apiGroups"] == ["kopf.dev"] for r in role["rules"]),
            any(o["kind"] == "ClusterKopfPeering" for o in objects),
            env.get("TEEROUTE_OPERATOR_PEERING"),
        )

    assert peering(1) == (False, False, None)
    assert peering(2) == (True, True, "teeroute-operator")


RESTRICTED_POD = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_pod_is_restricted(helm: Helm, preset: str) -> None:
    specs = list(pod_specs(helm.objects(preset, *preset_values(preset))))
    assert len(specs) == 2
    for name, spec in specs:
        pod = spec.get("securityContext") or {}
        assert {k: pod.get(k) for k in RESTRICTED_POD} == RESTRICTED_POD, name
        assert pod.get("runAsUser", 0) != 0, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        for container in spec["containers"] + spec.get("initContainers", []):
            ctx = container.get("securityContext") or {}
            assert {k: ctx.get(k) for k in RESTRICTED_CONTAINER} == RESTRICTED_CONTAINER, name
            assert container["image"].startswith("teeroute.dev/"), name
            assert (
                container["image"].endswith(":0.1.0")
                and container["imagePullPolicy"] == "IfNotPresent"
            )


@pytest.mark.parametrize("preset", PRESETS)
def test_render_is_deterministic(helm: Helm, preset: str) -> None:
    assert helm.template(preset, *preset_values(preset)) == helm.template(
        preset, *preset_values(preset)
    )


def test_templates_use_no_random_values_lookups_or_hooks() -> None:
    found = [
        (path.name, word)
        for path in CHART.rglob("templates/**/*")
        if path.is_file()
        for word in FORBIDDEN_IN_TEMPLATES
        if re.search(rf"\b{re.escape(word)}\b", path.read_text())
    ]
    assert found == []


def test_simulated_tee_only_when_enabled(helm: Helm) -> None:
    def trusted(preset: str) -> tuple[bool, bool]:
        objects = helm.objects(preset, *preset_values(preset))
        deployment = next(
            o
            for o in objects
            if o["metadata"]["name"] == "teeroute-operator" and o["kind"] == "Deployment"
        )
        env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        root = any(
            o["kind"] == "ConfigMap" and "simulated-root.pem" in o.get("data", {}) for o in objects
        )
        return "TEEROUTE_OPERATOR_ALLOW_SIMULATED_TEE" in env, root

    assert trusted("kind") == (True, True)
    assert trusted("aks") == (False, False)
    assert trusted("gke") == (False, False)


def test_operator_pins_the_gateway_keys(helm: Helm) -> None:
    objects = helm.objects("kind", *preset_values("kind"))
    deployment = next(
        o
        for o in objects
        if o["metadata"]["name"] == "teeroute-operator" and o["kind"] == "Deployment"
    )
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TEEROUTE_OPERATOR_GATEWAY_KEYS"] == GATEWAY_KEY
