"""The operator's ClusterRole as written (the sandbox test checks it as the apiserver sees it):
nothing on Secrets (a miner namespace grants `get` on named Secrets itself); on Pods no create
or delete."""

from __future__ import annotations

from typing import Any

import yaml

from ..conftest import ROOT

MANIFEST = ROOT / "e2e" / "sandbox" / "operator.yaml"


def rules() -> list[dict[str, Any]]:
    documents = list(yaml.safe_load_all(MANIFEST.read_text()))
    (role,) = [d for d in documents if d and d["kind"] == "ClusterRole"]
    found: list[dict[str, Any]] = role["rules"]
    return found


def verbs_on(resource: str, group: str = "") -> set[str]:
    return {
        verb
        for rule in rules()
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_operator_holds_no_cluster_wide_access_to_secrets() -> None:
    assert verbs_on("secrets") == set()
    assert not any("*" in r["resources"] or "*" in r["verbs"] for r in rules())


def test_pods_are_never_created_or_deleted() -> None:
    assert verbs_on("pods") == {"get", "list", "watch", "patch"}
