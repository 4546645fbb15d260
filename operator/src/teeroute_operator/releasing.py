"""Releasing a pool's secrets to an enclave whose evidence just verified: release.py decides
whether (and which), delivery.py seals and sends them, this module does it for the sweeper and
remembers per pool what each endpoint's enclave already has, so an unchanged set is not sent
again. An enclave whose release failed is not admitted (check `secrets.release`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from teeroute.api.minerpool import MinerPool
from teeroute.sealing.secrets import Signer
from teeroute_operator import delivery, release
from teeroute_operator.challenge import Target
from teeroute_operator.lease import RELEASE_CHECK, Outcome, Record, ReleaseFailed, Verified
from teeroute_operator.metrics import Metrics

Obj = dict[str, Any]
EventSink = Callable[[Obj, str, str, str], None]


@dataclass(frozen=True)
class Attended:
    """One endpoint's challenge, and the release of the pool's secrets that followed it."""

    outcome: Outcome
    released: str | None
    """The fingerprint of the secrets its enclave now has ("" none); None: as recorded."""


class Releaser:
    def __init__(
        self,
        http: httpx.AsyncClient,
        slots: asyncio.Semaphore,
        metrics: Metrics,
        emit: EventSink,
        signer: Signer | None,
    ) -> None:
        """`slots`: the sweeper's bound on requests in flight, shared with challenges."""
        self._http = http
        self._slots = slots
        self.metrics = metrics
        self.emit = emit
        self.signer = signer
        self._released: dict[tuple[str, str], dict[str, str]] = {}
        """Per pool: endpoint key -> fingerprint of the secrets delivered to it."""

    async def ensure(
        self,
        body: Obj,
        pool: MinerPool,
        target: Target,
        outcome: Verified,
        record: Record,
        secrets: release.SecretSet,
        who: str,
    ) -> Attended:
        """Make sure the verified enclave has the pool's current secrets."""
        memory = self._released.setdefault(_pool_key(pool), {})
        known = {memory.get(target.key, ""), record.secrets_released} - {""}
        decision = release.decide(
            outcome.hpke_key,
            secrets,
            known,
            signer=self.signer,
            pinned=outcome.pinned_release_key,
        )
        if isinstance(decision, release.Keep):
            return Attended(outcome, decision.fingerprint)
        if isinstance(decision, release.Fail):
            return self._failed(pool, outcome, decision.reason)
        async with self._slots:
            why = await delivery.deliver(
                self._http,
                target.url,
                outcome.hpke_public_key,
                f"{pool.metadata.namespace}/{pool.metadata.name}",
                decision.secrets.values,
                decision.signer,
                time.time_ns(),
            )
        if why is not None:
            return self._failed(pool, outcome, why)
        memory[target.key] = decision.fingerprint
        self.metrics.secret_releases.labels(*_pool_key(pool), "released").inc()
        self.emit(
            body,
            "Normal",
            "SecretsReleased",
            f"{who}: released {', '.join(decision.secrets.names)} to the enclave with HPKE key "
            f"{outcome.hpke_key[:16]}…",
        )
        return Attended(outcome, decision.fingerprint)

    def keep(self, pool: MinerPool, keys: set[str]) -> None:
        """Forget what was delivered to endpoints that are gone."""
        memory = self._released.get(_pool_key(pool), {})
        self._released[_pool_key(pool)] = {k: v for k, v in memory.items() if k in keys}

    def forget(self, pool: tuple[str, str]) -> None:
        self._released.pop(pool, None)

    def _failed(self, pool: MinerPool, outcome: Verified, reason: str) -> Attended:
        self.metrics.secret_releases.labels(*_pool_key(pool), "failed").inc()
        self.metrics.failed_checks.labels(outcome.tee, RELEASE_CHECK).inc()
        return Attended(ReleaseFailed(reason, outcome.hpke_key), None)


def _pool_key(pool: MinerPool) -> tuple[str, str]:
    return (pool.metadata.namespace, pool.metadata.name)
