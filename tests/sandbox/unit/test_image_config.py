"""An OCI image config plus the pod's container -> what runs, as a kubelet decides it:
argv, user and group, env and working directory; and the files the kubelet writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from teeroute_sandbox.runner import etcfiles
from teeroute_sandbox.runner.errors import ConfigError
from teeroute_sandbox.runner.images import ImageConfig, ImageMap
from teeroute_sandbox.runner.plan import Lookups, build_plan
from teeroute_sandbox.runner.users import user_ids

ACCOUNTS = "root:x:0:0::/root:/bin/sh\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n"
GROUPS = "root:x:0:\nnonroot:x:65532:\nstaff:x:50:\n"
OCI = {
    "config": {
        "User": "65532:65532",
        "Entrypoint": ["/usr/bin/python3.11", "-m", "app"],
        "Cmd": ["--serve"],
        "Env": ["PATH=/usr/bin:/bin", "MODE=image", "EMPTY=", "NO_EQUALS"],
        "WorkingDir": "/srv",
    }
}


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {"nodeName": "n", **spec},
        "status": {"podIP": "10.244.1.5"},
    }


def plan_for(container: dict[str, Any], pod_spec: dict[str, Any] | None = None) -> Any:
    image = ImageConfig.from_oci(OCI, *user_ids("65532:65532", ACCOUNTS, GROUPS))
    return build_plan(
        pod(**(pod_spec or {})), {"name": "c", "image": "i", **container}, image, Lookups()
    )


@pytest.mark.parametrize(
    ("spec", "ids"),
    [
        ("", (0, 0)),
        ("65532", (65532, 65532)),  # primary group from the image's /etc/passwd
        ("nonroot", (65532, 65532)),
        ("nonroot:staff", (65532, 50)),
        ("1000", (1000, 0)),  # not in /etc/passwd: group 0, as runtimes do
        ("1000:2000", (1000, 2000)),
    ],
)
def test_image_user_is_resolved_in_the_images_own_files(spec: str, ids: tuple[int, int]) -> None:
    assert user_ids(spec, ACCOUNTS, GROUPS) == ids


@pytest.mark.parametrize("spec", ["ghost", "nonroot:ghosts"])
def test_unknown_image_user_or_group_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="ghost"):
        user_ids(spec, ACCOUNTS, GROUPS)


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        ({}, ["/usr/bin/python3.11", "-m", "app", "--serve"]),
        ({"args": ["--once"]}, ["/usr/bin/python3.11", "-m", "app", "--once"]),
        ({"command": ["/bin/sh"]}, ["/bin/sh"]),  # command drops the image's CMD too
        ({"command": ["/bin/sh"], "args": ["-c", "x"]}, ["/bin/sh", "-c", "x"]),
    ],
)
def test_command_replaces_entrypoint_and_args_replace_cmd(
    container: dict[str, Any], argv: list[str]
) -> None:
    assert plan_for(container).argv == argv


@pytest.mark.parametrize(
    ("container_sc", "pod_sc", "ids"),
    [
        ({}, {}, (65532, 65532)),
        ({"runAsUser": 1000}, {}, (1000, 0)),
        ({"runAsUser": 1000, "runAsGroup": 1001}, {}, (1000, 1001)),
        ({}, {"runAsUser": 65532}, (65532, 65532)),
        ({}, {"runAsGroup": 7}, (65532, 7)),
        ({"runAsUser": 5}, {"runAsUser": 6, "runAsGroup": 8}, (5, 8)),
    ],
)
def test_security_context_overrides_the_image_user(
    container_sc: dict[str, Any], pod_sc: dict[str, Any], ids: tuple[int, int]
) -> None:
    plan = plan_for({"securityContext": container_sc}, {"securityContext": pod_sc})
    assert (plan.uid, plan.gid) == ids


@pytest.mark.parametrize(
    ("allow", "no_new_privileges"), [(None, False), (True, False), (False, True)]
)
def test_privilege_escalation_is_blocked_only_when_the_pod_says_so(
    allow: bool | None, no_new_privileges: bool
) -> None:
    sc = {} if allow is None else {"allowPrivilegeEscalation": allow}
    assert plan_for({"securityContext": sc}).no_new_privileges is no_new_privileges


def test_pod_env_overrides_image_env_and_workdir_comes_from_the_image() -> None:
    plan = plan_for({"env": [{"name": "MODE", "value": "pod"}]})
    assert plan.env["MODE"] == "pod"
    assert (plan.env["PATH"], plan.env["EMPTY"]) == ("/usr/bin:/bin", "")
    assert "NO_EQUALS" not in plan.env
    assert plan.working_dir == "/srv"
    assert plan_for({"workingDir": "/work"}).working_dir == "/work"


def test_the_probe_stays_a_host_command_and_dev_images_are_no_longer_built_in(
    tmp_path: Path,
) -> None:
    images = ImageMap(tmp_path / "images.json")
    probe = images.lookup("teeroute.dev/sandbox-probe:dev")
    assert probe is not None and probe.host is not None and probe.store is None
    for gone in ("operator", "agent", "engine-sim"):
        assert images.lookup(f"teeroute.dev/{gone}:dev") is None


def test_hosts_file_names_the_pod_and_its_aliases() -> None:
    text = etcfiles.hosts_file(
        pod(
            hostname="web-0",
            subdomain="web",
            hostAliases=[{"ip": "10.1.1.1", "hostnames": ["db", "db.local"]}],
        )
    )
    assert "10.244.1.5\tweb-0.web.ns.svc.cluster.local\tweb-0\n" in text
    assert text.endswith("10.1.1.1\tdb\tdb.local\n")
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, "nameserver 192.0.2.53\nsearch example.org\noptions edns0\n"),
        (
            {
                "dnsConfig": {
                    "nameservers": ["1.1.1.1"],
                    "options": [{"name": "ndots", "value": "2"}],
                }
            },
            "nameserver 192.0.2.53\nnameserver 1.1.1.1\n"
            "search example.org\noptions edns0 ndots:2\n",
        ),
        (
            {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"]}},
            "nameserver 1.1.1.1\n",
        ),
    ],
)
def test_resolv_conf_is_the_nodes_with_the_pods_dns_config(
    spec: dict[str, Any], expected: str
) -> None:
    node = "# generated\nnameserver 192.0.2.53\nsearch example.org\noptions edns0\n"
    assert etcfiles.resolv_conf(pod(**spec), node) == expected
