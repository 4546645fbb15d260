"""Operator restarts during churn (issue 17; the 50-restart run is e2e/bench/operatorchurn.py):
a seeded driver scales, edits and deletes MinerPools while the operator is killed with
SIGKILL or stopped with SIGTERM at random moments. After the last restart the namespace must
converge: every pool's status matches its spec, no object without a live owner, no pod,
child or admission record beyond what the specs ask for (tests/operator/churn.py)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import wait_for

from .churn import GRACE_S, Churn, probed_operator, problems, wait_up
from .conftest import OperatorProcess
from .test_attestation import API, attested_pool, status_of
from .test_reconcile import pool_ready

pytestmark = pytest.mark.sandbox

SEED = 20261205
RESTARTS = 8


@pytest.fixture(scope="module")
def churn_operator(
    sandbox: Sandbox, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = probed_operator(sandbox, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    wait_up(process)
    yield process
    process.stop()


def test_sigterm_mid_reconcile_stops_the_operator_cleanly(
    kube: KubeRest,
    namespace: str,
    churn_operator: OperatorProcess,
) -> None:
    """A pod's termination while handlers, timers and sweeps run: none of them may fail on a
    client closed under it, and the process must exit 0 within the grace period."""
    names = [f"busy-{i}" for i in range(6)]
    for name in names:
        kube.post(f"{API}/{namespace}/minerpools", attested_pool(name, 0))
    for name in names:
        wait_for(lambda n=name: pool_ready(kube, namespace, n), timeout_s=60, what=f"{name} Ready")
    for name in names:  # six reconciles in flight when the signal comes
        kube.patch(f"{API}/{namespace}/minerpools/{name}", {"spec": {"replicas": 1}})
    time.sleep(0.3)
    assert churn_operator.proc is not None
    mark = churn_operator.log.stat().st_size
    churn_operator.proc.send_signal(signal.SIGTERM)
    try:
        code = churn_operator.proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        churn_operator.stop()
        churn_operator.start()
        wait_up(churn_operator)
    with churn_operator.log.open("rb") as log:
        log.seek(mark)
        shutdown = log.read().decode(errors="replace")
    assert code == 0, f"exit {code} after SIGTERM:\n{shutdown[-3000:]}"
    assert "Traceback" not in shutdown, shutdown[-3000:]
    for name in names:  # and the next process finishes the work
        wait_for(
            lambda n=name: (
                pool_ready(kube, namespace, n)
                and status_of(kube, namespace, n).get("readyReplicas") == 1
            ),
            timeout_s=120,
            what=f"{name} at 1 replica",
        )


def test_random_restarts_during_churn_converge_without_orphans_or_duplicates(
    kube: KubeRest,
    namespace: str,
    churn_operator: OperatorProcess,
) -> None:
    churn = Churn(kube, namespace, random.Random(SEED), ("churn-a", "churn-b", "churn-c"))
    churn.create_all()
    churn.run(churn_operator, RESTARTS)
    assert sum(churn.signals.values()) == RESTARTS
    assert churn.signals == {"SIGKILL": RESTARTS // 2, "SIGTERM": RESTARTS // 2}
    assert churn.unclean == [], "SIGTERM did not end in exit 0 within the grace period"

    last: list[str] = []

    def converged() -> bool:
        last[:] = problems(kube, namespace, churn_operator.release_public)
        return not last

    try:
        wait_for(converged, timeout_s=180, interval_s=1.0, what="convergence")
    except AssertionError:
        raise AssertionError(f"not converged after {churn.actions}: {last}") from None
