"""Stopping one component to restart it (`teeroute sandbox restart etcd`): a name that is not
a component is a typed error listing the real ones, before anything is stopped; a stopped
daemon is gone when the stop returns."""

from __future__ import annotations

from pathlib import Path

import pytest

from teeroute_sandbox import daemons
from teeroute_sandbox.cluster import COMPONENT_NAMES, Sandbox, component_named
from teeroute_sandbox.errors import SandboxError, UnknownComponent
from teeroute_sandbox.layout import Layout
from teeroute_sandbox.settings import SandboxSettings


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_every_component_can_be_named(name: str) -> None:
    assert component_named(name) == name


@pytest.mark.parametrize("name", ["", "apiserver", "ETCD", "etcd ", "kubelet"])
def test_an_unknown_name_is_refused_listing_the_components(name: str) -> None:
    with pytest.raises(UnknownComponent) as refused:
        component_named(name)
    assert isinstance(refused.value, SandboxError)
    assert "etcd, kube-apiserver" in str(refused.value)


def test_stopping_an_unknown_component_touches_nothing(tmp_path: Path) -> None:
    box = Sandbox(SandboxSettings(name="never-up", state_root=tmp_path))
    with pytest.raises(UnknownComponent):
        box.stop_component("apiserver")
    assert not box.layout.root.exists()


@pytest.mark.parametrize("grace_s", [0.0, 5.0])
def test_a_stopped_daemon_is_gone_when_stop_returns(tmp_path: Path, grace_s: float) -> None:
    """0 s: a crash (SIGKILL at once); otherwise SIGTERM first. Either way the process no
    longer exists when `stop` returns, so a restart can bind the same ports at once."""
    layout = Layout(tmp_path)
    pid = daemons.spawn(layout, "sleeper", ["sleep", "60"])
    assert daemons.running(layout, "sleeper") == pid
    daemons.stop(layout, "sleeper", grace_s)
    assert daemons.start_time(pid) is None
    assert daemons.running(layout, "sleeper") is None
