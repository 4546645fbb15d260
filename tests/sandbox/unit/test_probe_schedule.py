"""Each probe keeps its own timetable (a liveness probe must not inherit readiness's)."""

from __future__ import annotations

from teeroute_sandbox.runner.supervisor import _Schedule


def test_probes_run_on_their_own_delay_and_period() -> None:
    readiness = _Schedule.of({"httpGet": {"port": 1}, "periodSeconds": 2}, started=100.0)
    liveness = _Schedule.of(
        {"httpGet": {"port": 1}, "initialDelaySeconds": 5, "periodSeconds": 10}, started=100.0
    )
    assert readiness is not None and liveness is not None
    due = {
        name: [t for t in range(100, 121) if s.due(float(t))]
        for name, s in (("readiness", readiness), ("liveness", liveness))
    }
    assert due["readiness"] == list(range(100, 121, 2))
    assert due["liveness"] == [105, 115]


def test_no_probe_no_schedule() -> None:
    assert _Schedule.of(None, 0.0) is None
