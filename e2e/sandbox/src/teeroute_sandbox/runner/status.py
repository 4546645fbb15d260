"""Container states -> the pod status patch the runner sends (pure).

Sent as a strategic-merge patch: `conditions` merge by type, `containerStatuses` are
replaced whole. lastTransitionTime moves only when a condition's value changes.
"""

from __future__ import annotations

from typing import Any

from teeroute_sandbox.runner.supervisor import ContainerState

Obj = dict[str, Any]


def container_status(uid: str, state: ContainerState) -> Obj:
    status: Obj = {
        "name": state.name,
        "image": state.image,
        "imageID": state.image_id,
        "containerID": f"sandbox://{uid}/{state.name}",
        "ready": state.ready,
        "restartCount": state.restart_count,
        "started": state.state == "running",
        "state": _state(state),
        "lastState": {},
    }
    if state.last_exit_code is not None:
        status["lastState"] = {
            "terminated": _drop_empty(
                {
                    "exitCode": state.last_exit_code,
                    "reason": "Error" if state.last_exit_code else "Completed",
                    "startedAt": state.last_started_at,
                    "finishedAt": state.last_finished_at,
                }
            )
        }
    return status


def _state(state: ContainerState) -> Obj:
    if state.state == "running":
        return {"running": {"startedAt": state.started_at}}
    if state.state == "terminated":
        return {
            "terminated": _drop_empty(
                {
                    "exitCode": state.exit_code,
                    "reason": state.reason,
                    "startedAt": state.started_at,
                    "finishedAt": state.finished_at,
                }
            )
        }
    waiting: Obj = {"reason": state.reason}
    if state.message:
        waiting["message"] = state.message
    return {"waiting": waiting}


def _drop_empty(fields: Obj) -> Obj:
    return {k: v for k, v in fields.items() if v not in ("", None)}


def pod_status_patch(
    uid: str, states: list[ContainerState], was_ready: bool | None, now: str, restart_policy: str
) -> tuple[Obj, bool]:
    """The patch, and whether the pod is now ready."""
    ready = bool(states) and all(s.ready for s in states)
    conditions = []
    for kind in ("ContainersReady", "Ready"):
        condition = {"type": kind, "status": "True" if ready else "False"}
        if was_ready is None or was_ready != ready:
            condition["lastTransitionTime"] = now
        conditions.append(condition)
    status: Obj = {
        "conditions": conditions,
        "containerStatuses": [container_status(uid, s) for s in states],
    }
    finished = states and all(s.state == "terminated" for s in states)
    if finished and restart_policy != "Always":
        failed = any(s.exit_code for s in states)
        if restart_policy == "Never" or not failed:
            status["phase"] = "Failed" if failed else "Succeeded"
    return {"status": status}, ready
