"""Keeps one container's process running, as the kubelet would.

A thread per container starts the launcher in the pod's namespace, watches the process,
runs its probes, and restarts it per the pod's restartPolicy with a crash-loop back-off
(1 s doubling to 30 s, reset after 60 s of running). Every change of state is reported
through `on_change` so the runner can publish it in the pod's status.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from teeroute_sandbox import netns
from teeroute_sandbox.runner.plan import LaunchPlan
from teeroute_sandbox.runner.probes import ProbeSpec, check

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_AFTER_S = 60.0


@dataclass(frozen=True)
class ContainerState:
    name: str
    image: str
    state: str  # waiting | running | terminated
    reason: str = ""
    message: str = ""
    started_at: str = ""
    exit_code: int | None = None
    restart_count: int = 0
    ready: bool = False
    pid: int | None = None
    finished_at: str = ""
    last_exit_code: int | None = None
    last_started_at: str = ""
    last_finished_at: str = ""
    image_id: str = ""


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Container:
    def __init__(
        self,
        container: dict[str, Any],
        plan: LaunchPlan,
        plan_file: Path,
        netns_name: str,
        pod_ip: str,
        restart_policy: str,
        on_change: Callable[[], None],
    ) -> None:
        self.spec = container
        self.plan = plan
        self.plan_file = plan_file
        self.netns_name = netns_name
        self.pod_ip = pod_ip
        self.restart_policy = restart_policy
        self.on_change = on_change
        self.state = ContainerState(
            container["name"],
            container["image"],
            "waiting",
            reason="ContainerCreating",
            image_id=plan.image_id,
        )
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"container-{container['name']}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace_s: float) -> None:
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._thread.join(grace_s + 5)

    # -- the container's life -------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_START_S
        while not self._stopping.is_set():
            started = time.monotonic()
            code = self._run_once()
            if self._stopping.is_set() or not self._should_restart(code):
                return
            backoff = (
                BACKOFF_START_S
                if time.monotonic() - started > BACKOFF_RESET_AFTER_S
                else min(backoff * 2, BACKOFF_MAX_S)
            )
            self._set(
                state="waiting",
                reason="CrashLoopBackOff",
                pid=None,
                ready=False,
                message=f"back-off {backoff:.0f}s restarting failed container",
                restart_count=self.state.restart_count + 1,
                last_exit_code=code,
                last_started_at=self.state.started_at,
                last_finished_at=self.state.finished_at,
            )
            self._stopping.wait(backoff)

    def _should_restart(self, code: int) -> bool:
        return self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)

    def _run_once(self) -> int:
        with Path(self.plan.log_path).open("ab") as log:
            self._proc = subprocess.Popen(
                netns.exec_argv(
                    self.netns_name,
                    [sys.executable, "-m", "teeroute_sandbox.runner.launcher", str(self.plan_file)],
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        readiness = self.spec.get("readinessProbe")
        self._set(
            state="running",
            reason="",
            message="",
            started_at=now_rfc3339(),
            pid=self._proc.pid,
            exit_code=None,
            ready=readiness is None,
        )
        self._watch(self._proc)
        code = self._proc.wait()
        self._set(
            state="terminated",
            reason="Completed" if code == 0 else "Error",
            finished_at=now_rfc3339(),
            exit_code=code,
            ready=False,
            pid=None,
        )
        return code

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for the process to exit (or for `stop`), running each probe on its own
        schedule (initialDelaySeconds, then every periodSeconds)."""
        started = time.monotonic()
        readiness = _Schedule.of(self.spec.get("readinessProbe"), started)
        liveness = _Schedule.of(self.spec.get("livenessProbe"), started)
        while proc.poll() is None and not self._stopping.wait(0.2):
            now = time.monotonic()
            if liveness is not None and liveness.due(now) and not self._live(liveness):
                proc.send_signal(signal.SIGTERM)  # liveness failed: restart the container
                return
            if readiness is not None and readiness.due(now):
                self._ready(readiness)

    def _live(self, schedule: _Schedule) -> bool:
        """False once liveness has failed failureThreshold times in a row."""
        ok = self._probe(schedule.spec)
        schedule.failures = 0 if ok else schedule.failures + 1
        return schedule.failures < schedule.spec.failure_threshold

    def _ready(self, schedule: _Schedule) -> None:
        ok = self._probe(schedule.spec)
        schedule.successes = schedule.successes + 1 if ok else 0
        schedule.failures = 0 if ok else schedule.failures + 1
        if schedule.successes >= schedule.spec.success_threshold and not self.state.ready:
            self._set(ready=True)
        elif schedule.failures >= schedule.spec.failure_threshold and self.state.ready:
            self._set(ready=False)

    def _probe(self, spec: ProbeSpec) -> bool:
        return check(spec, self.pod_ip, self.spec, self._exec_in_container)

    def _exec_in_container(self, argv: list[str], timeout_s: float) -> int:
        """Run `argv` inside the running container, as `kubectl exec` would."""
        pid = self.state.pid
        if pid is None:
            return 1
        probe_plan = self.plan_file.with_suffix(".probe.json")
        probe_plan.write_text(json.dumps(replace(self.plan, argv=argv, join_pid=pid).to_json()))
        probe_plan.chmod(0o600)
        try:
            return subprocess.run(
                netns.exec_argv(
                    self.netns_name,
                    [sys.executable, "-m", "teeroute_sandbox.runner.launcher", str(probe_plan)],
                ),
                capture_output=True,
                timeout=timeout_s + 2,
            ).returncode
        except subprocess.TimeoutExpired:
            return 1

    def _set(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)
        self.on_change()


@dataclass
class _Schedule:
    """One probe's timetable and its run of results."""

    spec: ProbeSpec
    next_at: float
    successes: int = 0
    failures: int = 0

    @classmethod
    def of(cls, raw: dict[str, Any] | None, started: float) -> _Schedule | None:
        spec = _spec(raw)
        return cls(spec, started + spec.initial_delay_s) if spec else None

    def due(self, now: float) -> bool:
        if now < self.next_at:
            return False
        self.next_at = now + self.spec.period_s
        return True


def _spec(raw: dict[str, Any] | None) -> ProbeSpec | None:
    return ProbeSpec.parse(raw) if raw else None
