"""Prometheus metrics of the attestation sweeper. Labels are bounded: TEE type, result,
check name (a fixed vocabulary of the verifiers) and the pool (an object the operator owns);
never an address, a nonce or evidence content."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from teeroute_operator import scrape


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.challenges = Counter(
            "teeroute_attestation_challenges_total",
            "Challenges sent to endpoints, by outcome (verified, rejected, unreachable, "
            "release_failed: verified, but the pool's secrets could not be delivered).",
            ["namespace", "pool", "outcome"],
            registry=self.registry,
        )
        self.failed_checks = Counter(
            "teeroute_attestation_failed_checks_total",
            "Verification checks that failed, by check name.",
            ["tee", "check"],
            registry=self.registry,
        )
        self.verify_seconds = Histogram(
            "teeroute_attestation_verify_seconds",
            "Time to verify one evidence document (parse, chain, signature, policy).",
            ["tee"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=self.registry,
        )
        self.challenge_seconds = Histogram(
            "teeroute_attestation_challenge_seconds",
            "Round trip of one challenge to an endpoint's agent, verification included.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.sweep_seconds = Histogram(
            "teeroute_attestation_sweep_seconds",
            "Duration of one sweep over a pool's endpoints.",
            ["namespace", "pool"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.attested = Gauge(
            "teeroute_attested_endpoints",
            "Endpoints of a pool that are attested and unexpired (listed in its EndpointSlice).",
            ["namespace", "pool"],
            registry=self.registry,
        )
        self.chip_changes = Counter(
            "teeroute_attestation_chip_changes_total",
            "Endpoints whose evidence came from a different chip than the one admitted.",
            ["namespace", "pool"],
            registry=self.registry,
        )

        self.secret_releases = Counter(
            "teeroute_secret_releases_total",
            "Releases of a pool's secrets to an attested enclave, by outcome (released, failed).",
            ["namespace", "pool", "outcome"],
            registry=self.registry,
        )

    def forget_pool(self, namespace: str, pool: str) -> None:
        for metric in (self.attested, self.sweep_seconds):
            with contextlib.suppress(KeyError):
                metric.remove(namespace, pool)

    def serve(self, port: int, token: str | None = None) -> None:
        """Serve /metrics on `port`; with a `token`, only to `Authorization: Bearer <token>`."""
        scrape.serve(self.registry, port, token)
