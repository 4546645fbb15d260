"""Pod + container + image -> launch plan, by the kubelet's rules."""

from __future__ import annotations

from typing import Any

import pytest

from teeroute_sandbox.runner.images import ImageConfig
from teeroute_sandbox.runner.plan import (
    ConfigError,
    Lookups,
    Mount,
    build_plan,
    expand,
    field_value,
    service_env,
)

IMAGE = ImageConfig(
    entrypoint=("/bin/entry",),
    cmd=("--default",),
    user=1000,
    env={"FROM_IMAGE": "1", "SHARED": "image"},
)


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u-1",
            "labels": {"app": "a"},
            "annotations": {"note": "n"},
        },
        "spec": {"nodeName": "node-1", "serviceAccountName": "sa", **spec},
        "status": {"podIP": "10.244.1.5", "hostIP": "10.0.0.1"},
    }


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        ({}, ["/bin/entry", "--default"]),
        ({"args": ["--x"]}, ["/bin/entry", "--x"]),
        ({"command": ["/bin/other"]}, ["/bin/other"]),
        ({"command": ["/bin/other"], "args": ["a"]}, ["/bin/other", "a"]),
        (
            {"command": ["/bin/other"], "args": ["$(POD_IP):8080", "$$(POD_IP)", "$(NOPE)"]},
            ["/bin/other", "10.244.1.5:8080", "$(POD_IP)", "$(NOPE)"],
        ),
    ],
)
def test_command_and_args_follow_kubernetes_rules(
    container: dict[str, Any], argv: list[str]
) -> None:
    c = {
        "name": "c",
        "image": "i",
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        **container,
    }
    assert build_plan(pod(), c, IMAGE, Lookups()).argv == argv


def test_env_layers_image_then_services_then_envfrom_then_env() -> None:
    c = {
        "name": "c",
        "image": "i",
        "envFrom": [
            {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
            {"secretRef": {"name": "s"}},
        ],
        "env": [
            {"name": "SHARED", "value": "container"},
            {"name": "DERIVED", "value": "$(SHARED)-$(CM_k)"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}},
            },
        ],
    }
    lookups = Lookups(
        secrets={"s": {"pw": "hunter2"}},
        config_maps={"cm": {"k": "v"}},
        service_env={"SHARED": "service", "KUBERNETES_SERVICE_HOST": "10.96.0.1"},
    )
    env = build_plan(pod(), c, IMAGE, lookups).env
    assert env["FROM_IMAGE"] == "1"
    assert env["SHARED"] == "container"
    assert env["DERIVED"] == "container-v"
    assert env["CM_k"] == "v"
    assert env["pw"] == env["PASSWORD"] == "hunter2"
    assert env["OPT"] == ""
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["HOSTNAME"] == "p"


@pytest.mark.parametrize(
    "env",
    [
        [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}],
        [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "missing"}}}],
        [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.unknown"}}}],
    ],
)
def test_missing_references_are_config_errors(env: list[dict[str, Any]]) -> None:
    c = {"name": "c", "image": "i", "env": env}
    with pytest.raises(ConfigError):
        build_plan(pod(), c, IMAGE, Lookups(config_maps={"cm": {"k": "v"}}))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "p"),
        ("metadata.namespace", "ns"),
        ("metadata.uid", "u-1"),
        ("metadata.labels['app']", "a"),
        ("metadata.annotations['note']", "n"),
        ("spec.nodeName", "node-1"),
        ("spec.serviceAccountName", "sa"),
        ("status.podIP", "10.244.1.5"),
        ("status.hostIP", "10.0.0.1"),
        ("metadata.labels", 'app="a"'),
    ],
)
def test_downward_api_fields(path: str, value: str) -> None:
    assert field_value(pod(), path) == value


def test_resource_field_ref_rounds_up_by_divisor() -> None:
    c = {
        "name": "c",
        "image": "i",
        "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}},
        "env": [
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
        ],
    }
    env = build_plan(pod(), c, IMAGE, Lookups()).env
    assert (env["CPU"], env["MEM"]) == ("2", "1024")


@pytest.mark.parametrize(
    ("pod_sc", "container_sc", "expected"),
    [
        ({}, {}, (1000, 0, [], False)),
        (
            {"runAsUser": 5, "runAsGroup": 6, "fsGroup": 7, "supplementalGroups": [8]},
            {},
            (5, 6, [7, 8], False),
        ),
        ({"runAsUser": 5}, {"runAsUser": 9, "readOnlyRootFilesystem": True}, (9, 0, [], True)),
    ],
)
def test_identity_from_security_contexts(
    pod_sc: dict[str, Any], container_sc: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    plan = build_plan(
        pod(securityContext=pod_sc),
        {"name": "c", "image": "i", "securityContext": container_sc},
        IMAGE,
        Lookups(),
    )
    assert (plan.uid, plan.gid, plan.groups, plan.read_only_root) == expected


def test_run_as_non_root_refuses_uid_zero() -> None:
    root_image = ImageConfig(entrypoint=("/bin/x",))
    with pytest.raises(ConfigError, match="runAsNonRoot"):
        build_plan(
            pod(securityContext={"runAsNonRoot": True}),
            {"name": "c", "image": "i"},
            root_image,
            Lookups(),
        )


def test_mounts_are_ordered_outermost_first_and_need_a_volume() -> None:
    c = {
        "name": "c",
        "image": "i",
        "volumeMounts": [
            {"name": "b", "mountPath": "/etc/app/certs", "readOnly": True},
            {"name": "a", "mountPath": "/etc/app"},
            {"name": "a", "mountPath": "/cfg/one.yaml", "subPath": "one.yaml"},
        ],
    }
    plan = build_plan(pod(), c, IMAGE, Lookups(volume_dirs={"a": "/v/a", "b": "/v/b"}))
    assert plan.mounts == [
        Mount("/v/a", "/etc/app", False),
        Mount("/v/a/one.yaml", "/cfg/one.yaml", False),
        Mount("/v/b", "/etc/app/certs", True),
    ]
    with pytest.raises(ConfigError, match="volume 'b'"):
        build_plan(pod(), c, IMAGE, Lookups(volume_dirs={"a": "/v/a"}))


def test_plan_round_trips_through_json() -> None:
    c = {"name": "c", "image": "i", "volumeMounts": [{"name": "a", "mountPath": "/x"}]}
    plan = build_plan(pod(), c, IMAGE, Lookups(volume_dirs={"a": "/v/a"}))
    from teeroute_sandbox.runner.plan import LaunchPlan

    assert LaunchPlan.from_json(plan.to_json()) == plan


def test_service_links_like_the_kubelet() -> None:
    env = service_env(
        [
            {
                "metadata": {"name": "my-svc"},
                "spec": {
                    "clusterIP": "10.96.3.4",
                    "ports": [
                        {"name": "http", "port": 80, "protocol": "TCP"},
                        {"port": 53, "protocol": "UDP"},
                    ],
                },
            },
            {
                "metadata": {"name": "headless"},
                "spec": {"clusterIP": "None", "ports": [{"port": 1}]},
            },
        ]
    )
    assert env["MY_SVC_SERVICE_HOST"] == "10.96.3.4"
    assert env["MY_SVC_SERVICE_PORT"] == "80"
    assert env["MY_SVC_SERVICE_PORT_HTTP"] == "80"
    assert env["MY_SVC_PORT"] == "tcp://10.96.3.4:80"
    assert env["MY_SVC_PORT_53_UDP_ADDR"] == "10.96.3.4"
    assert not any(k.startswith("HEADLESS") for k in env)


def test_expand_leaves_unknown_and_unescapes_dollars() -> None:
    assert expand("$(A)/$(B)/$$(A)/$$", {"A": "1"}) == "1/$(B)/$(A)/$"
