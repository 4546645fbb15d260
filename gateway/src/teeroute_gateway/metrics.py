"""Every Prometheus metric of the gateway (one module, as the operator's).

Labels are bounded: `model` and `pool` come from the catalog (operators decide how many),
unknown models are counted as `unknown`, statuses as classes. No key, prompt or request id
is ever a label. Per-pool health is computed at scrape time from the HealthBook, so the
request path pays nothing for it.

The refusals of the gateway's limits (docs/gateway-limits.md) are counted where they happen:
in the admission gate (overload.py), in the ASGI body reads (asgi.py) and in the connection
protocol (protocol.py), which runs before any app or registry of the worker exists. So
`LIMIT_REFUSALS` is one per process (a gateway worker is one process with one app) and each
GatewayMetrics registry includes it; the gate's in-flight and queued requests are read from
the gate at scrape time (`GatewayMetrics.admission`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from teeroute_gateway.health import HealthBook

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)
"""Time per output token: 1 ms (1000 tok/s) to over a second."""

REFUSAL_REASONS = (
    "queue_full",  # 503 overloaded: every slot taken and maxQueued waiting
    "queue_timeout",  # 503 overloaded: no slot within queueTimeoutS
    "connection_cap",  # 503 overloaded: a connection past maxConnections
    "head_timeout",  # 408: a request head not complete within requestHeadTimeoutS
    "head_too_large",  # 431: over maxHeaderBytes or maxHeaders
    "body_timeout",  # 408: a body not complete within bodyReadTimeoutS
    "body_too_large",  # 413: over maxBodyBytes
    "key_concurrency",  # 429: a key with maxInFlightPerKey requests in flight already
)
LIMIT_REFUSALS = Counter(
    "teeroute_gateway_limit_refusals_total",
    "Requests and connections refused by the gateway's limits, by reason "
    "(" + ", ".join(REFUSAL_REASONS) + "; docs/gateway-limits.md).",
    ["reason"],
    registry=None,
)
REFUSED = {reason: LIMIT_REFUSALS.labels(reason) for reason in REFUSAL_REASONS}
"""The counter of each reason, bound once (so every reason shows, at 0, from the start)."""


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "teeroute_gateway_requests_total",
            "Inference requests answered, by public model, pool and HTTP status class.",
            ["model", "pool", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "teeroute_gateway_request_duration_seconds",
            "Time from the request's arrival to the end of the response.",
            ["model", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "teeroute_gateway_time_to_first_token_seconds",
            "Streamed answers: time from sending the request to the miner to its first "
            "content-bearing delta (OTel gen_ai.server.time_to_first_token; speed.py).",
            ["model", "pool"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "teeroute_gateway_time_per_output_token_seconds",
            "Streamed answers: (last content - first content) / (output tokens - 1) "
            "(OTel gen_ai.server.time_per_output_token; speed.py).",
            ["model", "pool"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "teeroute_gateway_tokens_total",
            "Tokens billed, by direction and whether the miner reported or we counted them.",
            ["model", "pool", "direction", "source"],
            registry=r,
        )
        self.cost = Counter(
            "teeroute_gateway_cost_total",
            "Amount charged, in units of the billing currency.",
            ["model", "pool", "currency"],
            registry=r,
        )
        self.attempts = Counter(
            "teeroute_gateway_upstream_attempts_total",
            "Attempts to reach a miner, by outcome "
            "(ok, connect, timeout, closed, protocol, sealed, status_5xx, status_429).",
            ["pool", "outcome"],
            registry=r,
        )
        self.ejections = Counter(
            "teeroute_gateway_endpoint_ejections_total",
            "Endpoints taken out of rotation by outlier detection.",
            ["pool"],
            registry=r,
        )
        self.receipts = Counter(
            "teeroute_gateway_receipts_total",
            "Usage receipts of sealed requests, by verdict (valid, missing, invalid, "
            "implausible); only valid ones are billed.",
            ["pool", "status"],
            registry=r,
        )
        self.sessions = Counter(
            "teeroute_gateway_sealed_sessions_opened_total",
            "Sessions the gateway opened with enclaves (one handshake each; sealed requests "
            "then travel in them until the lease ends).",
            ["pool"],
            registry=r,
        )
        self.unrooted = Counter(
            "teeroute_gateway_receipts_unrooted_total",
            "Receipts no signed Merkle root covered in time (flagged in the ledger).",
            registry=r,
        )
        self.rejections = Counter(
            "teeroute_gateway_rejections_total",
            "Requests refused before dispatch, by reason "
            "(auth, invalid, not_found, credit, rate_limit, no_endpoint).",
            ["reason"],
            registry=r,
        )
        r.register(LIMIT_REFUSALS)
        self.admission: Callable[[], tuple[int, int]] = lambda: (0, 0)
        """(in flight, queued) of the admission gate; the app points it at its gate."""
        r.register(AdmissionCollector(lambda: self.admission()))


class AdmissionCollector(Collector):
    """The admission gate's in-flight and queued requests, read at scrape time."""

    def __init__(self, load: Callable[[], tuple[int, int]]) -> None:
        self.load = load

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_flight, queued = self.load()
        yield GaugeMetricFamily(
            "teeroute_gateway_inflight_requests",
            "Requests holding one of this worker's maxInFlight slots.",
            value=in_flight,
        )
        yield GaugeMetricFamily(
            "teeroute_gateway_queued_requests",
            "Requests waiting for a slot (at most maxQueued).",
            value=queued,
        )


class PoolHealthCollector(Collector):
    """Per-pool gauges read from the HealthBook and the catalog at scrape time."""

    def __init__(
        self, health: HealthBook, admitted: Callable[[], dict[str, int]], clock: Callable[[], float]
    ) -> None:
        self.health = health
        self.admitted = admitted
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
        inflight = GaugeMetricFamily(
            "teeroute_gateway_pool_inflight_requests",
            "Requests in flight per pool.",
            labels=["pool"],
        )
        ejected = GaugeMetricFamily(
            "teeroute_gateway_pool_ejected_endpoints",
            "Endpoints currently ejected per pool.",
            labels=["pool"],
        )
        admitted = GaugeMetricFamily(
            "teeroute_gateway_pool_admitted_endpoints",
            "Endpoints with fresh attestation per pool.",
            labels=["pool"],
        )
        per_pool: dict[str, list[int]] = {}
        for entry in self.health.all():
            counts = per_pool.setdefault(entry.pool, [0, 0])
            counts[0] += entry.inflight
            counts[1] += int(entry.ejected(now))
        for pool, (n_inflight, n_ejected) in sorted(per_pool.items()):
            inflight.add_metric([pool], n_inflight)
            ejected.add_metric([pool], n_ejected)
        for pool, count in sorted(self.admitted().items()):
            admitted.add_metric([pool], count)
        yield inflight
        yield ejected
        yield admitted
