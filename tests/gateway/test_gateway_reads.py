"""What the gateway gives away without limit (issue 14, hole 7), against a real gateway
process: `POST /v1/attestations` makes enclaves produce fresh evidence, so it is charged to
the calling key's limits (the Route's, shared with inference, and a per-key ceiling); and
/metrics can be closed behind a token."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from teeroute_gateway.challenges import CHALLENGES_PER_MINUTE
from tests.gateway.procs import Proc, create_key, engine, gateway, lease, write_config

METRICS_TOKEN = "scrape-4b1d93e07c"  # noqa: S105 - a test token
ROUTE_RPM = 3


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reads")


@contextmanager
def served(tmp: Path, name: str, route: dict[str, object] | None = None) -> Iterator[Proc]:
    with engine(tmp, name) as upstream:
        config = write_config(
            tmp / f"{name}.yaml",
            {"sim": [("sim-0", upstream.url)]},
            leases={"sim": [lease("sim-0")]},
            route=route,
            settings={"metricsTokenSha256": hashlib.sha256(METRICS_TOKEN.encode()).hexdigest()},
        )
        with gateway(config, name=name) as proc:
            yield proc


@pytest.fixture(scope="module")
def limited(tmp: Path) -> Iterator[tuple[Proc, Path]]:
    """A gateway whose Route allows each key ROUTE_RPM requests a minute."""
    with served(tmp, "limited", {"rateLimits": {"requestsPerMinute": ROUTE_RPM}}) as proc:
        yield proc, tmp / "limited.yaml"


@pytest.fixture(scope="module")
def unlimited(tmp: Path) -> Iterator[tuple[Proc, Path]]:
    """A gateway whose Route sets no limit."""
    with served(tmp, "unlimited") as proc:
        yield proc, tmp / "unlimited.yaml"


def challenge(proc: Proc, key: str) -> httpx.Response:
    return httpx.post(
        f"{proc.url}/v1/attestations",
        json={"model": "sim-model", "nonce": base64.b64encode(os.urandom(32)).decode()},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def chat(proc: Proc, key: str) -> httpx.Response:
    return httpx.post(
        f"{proc.url}/v1/chat/completions",
        json={
            "model": "sim-model",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def assert_rate_limited(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    error = answer.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_requests"
    assert 1 <= int(answer.headers["Retry-After"]) <= 61  # a bound: the window plus a bucket


def test_fresh_evidence_calls_are_charged_to_the_keys_route_limit(
    limited: tuple[Proc, Path],
) -> None:
    proc, config = limited
    key, other = create_key(config, "5"), create_key(config, "5")
    for _ in range(ROUTE_RPM):
        assert challenge(proc, key).status_code == 200
    assert_rate_limited(challenge(proc, key))
    assert_rate_limited(chat(proc, key))  # the same budget as inference on the route
    assert challenge(proc, other).status_code == 200  # another key is charged its own


def test_fresh_evidence_calls_have_a_per_key_ceiling_without_route_limits(
    unlimited: tuple[Proc, Path],
) -> None:
    proc, config = unlimited
    key = create_key(config, "5")
    for _ in range(CHALLENGES_PER_MINUTE):
        assert challenge(proc, key).status_code == 200
    denied = challenge(proc, key)
    assert_rate_limited(denied)
    assert "attestations" in denied.json()["error"]["message"]
    assert chat(proc, key).status_code == 200  # inference is not charged for them


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {METRICS_TOKEN}"}],
)
def test_metrics_without_the_token_are_refused(
    unlimited: tuple[Proc, Path], headers: dict[str, str]
) -> None:
    proc, _ = unlimited
    answer = httpx.get(f"{proc.url}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_metrics_token"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "teeroute_" not in answer.text


def test_metrics_with_the_token_are_served(unlimited: tuple[Proc, Path]) -> None:
    proc, _ = unlimited
    answer = httpx.get(
        f"{proc.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    assert answer.status_code == 200 and "teeroute_" in answer.text
