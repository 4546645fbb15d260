"""The gateway's OpenAPI document (teeroute_gateway.openapi): served at /openapi.json as built,
committed as docs/openapi.json, covering every route; and the plain regression tests of what
fuzzing the live gateway against it found (test_openapi_fuzz.py)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from teeroute_gateway import openapi
from teeroute_gateway.app import GatewayApp
from teeroute_gateway.lifecycle import Lifecycle
from teeroute_gateway.openapi_models import ErrorBody
from tests.gateway.procs import Proc, create_key, engine, gateway, lease, write_config

COMMITTED = Path(__file__).parents[2] / "docs" / "openapi.json"
ADMIN = "tra-openapi-doc-admin"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str]]:
    tmp = tmp_path_factory.mktemp("openapi-doc")
    with engine(tmp, "a", "--tokens-per-s", "0", "--ttft-ms", "0") as upstream:
        config = write_config(
            tmp / "gw.yaml",
            {"sim": [("sim-0", upstream.url)]},
            leases={"sim": [lease("sim-0")]},
            settings={"adminKeySha256": [hashlib.sha256(ADMIN.encode()).hexdigest()]},
        )
        key = create_key(config, "1")
        with gateway(config) as proc:
            yield proc, key


def test_the_document_has_an_operation_for_every_route() -> None:
    routes = set(GatewayApp(Lifecycle(None)).routes)
    paths = openapi.document()["paths"]
    assert {(method.upper(), path) for path, ops in paths.items() for method in ops} == routes


def test_every_error_status_answers_the_openai_error_shape() -> None:
    doc = openapi.document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    assert answer == {"$ref": f"#/components/responses/{status}"}, (method, path)
    for answer in doc["components"]["responses"].values():
        assert answer["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }


def test_the_gateway_serves_the_built_document(served: tuple[Proc, str]) -> None:
    proc, _ = served
    answer = httpx.get(f"{proc.url}/openapi.json", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.content == openapi.encoded()


def test_the_committed_copy_is_current() -> None:
    assert COMMITTED.read_bytes() == openapi.encoded(), (
        "docs/openapi.json is stale: run "
        "`python3 -m uv run --frozen python -m teeroute_gateway.openapi docs/openapi.json`"
    )


# -- found by schemathesis --------------------------------------------------------------------


def raw_exchange(proc: Proc, request: bytes) -> tuple[int, bytes]:
    """Send bytes no HTTP client would, read the answer until the server closes."""
    host, port = proc.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-session-id: a\x01b\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer \x00\r\n\r\n",
        b"GET /v1/models HTTP/1.1 extra\r\nhost: x\r\n\r\n",
    ],
    ids=["control-character-in-header", "nul-in-authorization", "bad-request-line"],
)
def test_a_request_the_http_parser_refuses_gets_an_openai_error(
    served: tuple[Proc, str], request_bytes: bytes
) -> None:
    """uvicorn answered these itself, with text/plain "Invalid HTTP request received."."""
    status, body = raw_exchange(served[0], request_bytes)
    assert status == 400
    error = ErrorBody.model_validate_json(body).error
    assert (error.type, error.code) == ("invalid_request_error", "invalid_http_request")


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"to": "0001-01-01"}, "to"),  # the default start, 30 days earlier, is before year 1
        ({"from": "0001-01-01T00:00:00+00:01"}, "from"),  # before year 1 in UTC
        ({"to": "9999-12-31T23:59:59-23:59"}, "to"),  # after year 9999 in UTC
    ],
)
def test_a_settlement_period_out_of_range_is_a_bad_request(
    served: tuple[Proc, str], query: dict[str, str], param: str
) -> None:
    """These answered 500 internal_error (OverflowError in the period or the ledger query)."""
    answer = httpx.get(
        f"{served[0].url}/v1/settlement",
        params=query,
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    )
    assert answer.status_code == 400, answer.text
    assert ErrorBody.model_validate_json(answer.content).error.param == param


@pytest.mark.parametrize(
    ("provider", "param"),
    [
        ({"max_attestation_age": 0.0}, "provider.max_attestation_age"),
        ({"tee": ["tdx"]}, "provider.tee"),
    ],
)
def test_provider_preferences_no_endpoint_meets_are_not_found(
    served: tuple[Proc, str], provider: dict[str, object], param: str
) -> None:
    """The client's own narrowing left no endpoint: 404 as for provider.only, not the 503
    `no_attested_endpoint` that tells it to retry what cannot succeed."""
    proc, key = served
    answer = httpx.post(
        f"{proc.url}/v1/completions",
        json={"model": "sim-model", "prompt": "0", "max_tokens": 4, "provider": provider},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code == 404, answer.text
    error = ErrorBody.model_validate_json(answer.content).error
    assert (error.code, error.param) == ("no_provider_matches", param)
