"""Starting and stopping one gateway process (the ASGI lifespan).

Startup: settings (from the config file, or TEEROUTE_GATEWAY_* in cluster mode) → ledger
(schema created if missing) → rate limiter → upstream pool, HealthBook, metrics, tracer →
the catalog source in a task (file or cluster) → a reaper that frees holds of crashed
gateways. Shutdown: stop the tasks, close the ledger after its pending writes, drop idle
upstream connections. A failed startup is reported to the server, which exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Any

from teeroute_gateway import declared_keys, root_keeper
from teeroute_gateway.asgi import Receive, Send
from teeroute_gateway.auth import KeyCache
from teeroute_gateway.dispatch import Dispatcher
from teeroute_gateway.health import HealthBook
from teeroute_gateway.ledger import open_ledger
from teeroute_gateway.limits import open_limiter
from teeroute_gateway.metrics import GatewayMetrics, PoolHealthCollector
from teeroute_gateway.services import Services
from teeroute_gateway.settings import ENV_PREFIX, GatewaySettings, operator_public_key
from teeroute_gateway.sources import file as file_source
from teeroute_gateway.tracing import make_tracer
from teeroute_gateway.upstream import UpstreamPool

log = logging.getLogger(__name__)
CONFIG_ENV = "TEEROUTE_GATEWAY_CONFIG_FILE"
REAP_EVERY_S = 60.0


class Lifecycle:
    def __init__(
        self,
        config: Path | None,
        settings: GatewaySettings | None = None,
        span_exporter: Any = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.span_exporter = span_exporter
        self.services: Services | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._upstream: UpstreamPool | None = None
        self._kube: Any = None

    @classmethod
    def from_env(cls) -> Lifecycle:
        path = os.environ.get(CONFIG_ENV)
        return cls(Path(path) if path else None)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.exception("gateway startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        loaded = file_source.load(self.config) if self.config else None
        settings = self.settings or (
            loaded.settings if loaded else GatewaySettings.from_env(os.environ)
        )
        ledger = open_ledger(settings.ledger)
        await ledger.open()
        if settings.api_keys_file is not None:
            await declared_keys.apply(
                ledger, declared_keys.load(settings.api_keys_file), settings.currency
            )
        limiter = open_limiter(settings.rate_limiter)
        metrics = GatewayMetrics()
        health = HealthBook()
        self._upstream = UpstreamPool(connect_timeout_s=settings.connect_timeout_s)
        dispatcher = Dispatcher(self._upstream, health, metrics, settings)
        services = Services(
            settings=settings,
            ledger=ledger,
            limiter=limiter,
            keys=KeyCache(ledger, settings.admin_key_sha256),
            health=health,
            dispatcher=dispatcher,
            metrics=metrics,
            tracer=make_tracer(settings.tracing, settings.trace_sample_ratio, self.span_exporter),
        )
        roots = _root_keeper(services)
        metrics.registry.register(
            PoolHealthCollector(health, lambda: _admitted(services), time.monotonic)
        )
        if loaded is not None:
            services.update(loaded.inventory)
            source: Any = file_source.FileSource(loaded.path, services.update)
        else:
            source = self._kube_source(settings, services)
        self.services = services
        self._tasks = [
            asyncio.create_task(source.run()),
            asyncio.create_task(_reap(services)),
            asyncio.create_task(roots.run()),
        ]

    def _kube_source(self, settings: GatewaySettings, services: Services) -> Any:
        from teeroute.kube import Kube
        from teeroute.kube.config import load_config
        from teeroute_gateway.sources.kube import KubeSource

        operator_key = operator_public_key(settings.operator_key)
        if operator_key is None:
            raise ValueError(
                f"cluster mode needs {ENV_PREFIX}OPERATOR_KEY (operatorKey): the operator's "
                "public key, whose signed admission records are the only endpoints routed"
            )
        self._kube = Kube(load_config(), field_manager="teeroute-gateway")
        return KubeSource(
            self._kube,
            on_change=services.update,
            operator_key=operator_key,
            namespaces=settings.namespaces,
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.services is not None:
            await self.services.ledger.close()
            await self.services.limiter.close()
        if self._upstream is not None:
            self._upstream.close()
        if self._kube is not None:
            await self._kube.aclose()


def _root_keeper(services: Services) -> root_keeper.RootKeeper:
    """Signed roots for the sealed sessions' receipts: proofs stored, the late flagged."""
    settings, dispatcher = services.settings, services.dispatcher
    dispatcher.sessions.root_interval_s = settings.receipt_root_interval_s
    keeper = root_keeper.RootKeeper(
        services.ledger,
        dispatcher.sessions,
        dispatcher.post_frames,
        settings.receipt_root_grace_s,
        every_s=min(settings.receipt_root_interval_s, settings.receipt_root_grace_s) / 2,
    )
    dispatcher.sessions.sink = keeper.store
    keeper.unrooted = services.metrics.unrooted.inc
    return keeper


def _admitted(services: Services) -> dict[str, int]:
    now = dt.datetime.now(dt.UTC)
    allow = services.settings.allow_unattested
    return {
        key: sum(1 for e in pool.endpoints if e.admitted(now, allow))
        for key, pool in services.catalog.pools.items()
    }


async def _reap(services: Services) -> None:
    while True:
        await asyncio.sleep(min(REAP_EVERY_S, services.settings.hold_ttl_s / 2))
        try:
            freed = await services.ledger.reap()
        except Exception:
            log.exception("releasing expired holds failed; retrying later")
            continue
        if freed:
            log.warning("released %d expired holds (a gateway stopped mid-request)", freed)
