"""The operator's /metrics behind a token (issue 14, hole 7): over real HTTP, a scrape without
the right bearer token gets 401 and no metric; with it, the metrics."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from teeroute_operator.metrics import Metrics
from teeroute_operator.scrape import authorized
from teeroute_operator.settings import OperatorSettings

TOKEN = "scrape-token-3f9c0e5a"  # noqa: S105 - a test token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serving(token: str | None) -> str:
    metrics = Metrics()
    metrics.challenges.labels("miners", "llama", "verified").inc()
    port = free_port()
    metrics.serve(port, token=token)
    return f"http://127.0.0.1:{port}/metrics"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer"},
    ],
)
def test_a_scrape_without_the_token_is_refused(headers: dict[str, str]) -> None:
    answer = httpx.get(serving(TOKEN), headers=headers, timeout=5)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "teeroute_" not in answer.text


def test_a_scrape_with_the_token_gets_the_metrics() -> None:
    answer = httpx.get(serving(TOKEN), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert answer.status_code == 200
    assert 'teeroute_attestation_challenges_total{namespace="miners"' in answer.text


def test_without_a_token_metrics_are_open() -> None:
    answer = httpx.get(serving(None), timeout=5)
    assert answer.status_code == 200 and "teeroute_attestation_challenges_total" in answer.text


@pytest.mark.parametrize(
    ("header", "ok"),
    [(f"Bearer {TOKEN}", True), (f"bearer {TOKEN}", True), (None, False), (TOKEN, False)],
)
def test_the_bearer_header_is_read_strictly(header: str | None, ok: bool) -> None:
    assert authorized(header, TOKEN) is ok


def test_the_token_comes_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert OperatorSettings().metrics_token() is None
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n")
    monkeypatch.setenv("TEEROUTE_OPERATOR_METRICS_TOKEN_FILE", str(path))
    assert OperatorSettings().metrics_token() == TOKEN
    path.write_text("")
    with pytest.raises(ValueError, match="metrics_token_file"):
        OperatorSettings()
