"""The parts one gateway process shares between requests, built once at startup.

The catalog is swapped whole when a source delivers a new inventory (`update`); readers
take `services.catalog` once per request and never see a half-built one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from teeroute_gateway.auth import KeyCache
from teeroute_gateway.catalog import Catalog, Inventory, build_catalog
from teeroute_gateway.dispatch import Dispatcher
from teeroute_gateway.health import HealthBook
from teeroute_gateway.ledger import Ledger
from teeroute_gateway.limits import RateLimiter
from teeroute_gateway.metrics import GatewayMetrics
from teeroute_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: GatewaySettings
    ledger: Ledger
    limiter: RateLimiter
    keys: KeyCache
    health: HealthBook
    dispatcher: Dispatcher
    metrics: GatewayMetrics
    tracer: Any = None
    catalog: Catalog = field(default_factory=Catalog)
    ready: bool = False

    def update(self, inventory: Inventory) -> None:
        catalog = build_catalog(inventory)
        self.catalog = catalog
        self.health.forget_except({e.key for p in catalog.pools.values() for e in p.endpoints})
        # sessions with endpoints no longer listed (or whose lease ended) are dropped
        self.dispatcher.sessions.prune(
            [e for p in catalog.pools.values() for e in p.endpoints], time.time()
        )
        if not self.ready:
            log.info(
                "catalog ready: %d models, %d endpoints",
                len(catalog.models),
                catalog.endpoint_count(),
            )
        self.ready = True
