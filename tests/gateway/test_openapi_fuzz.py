"""Schemathesis against a real gateway: every operation of its OpenAPI document, with inputs
generated from the document (valid and invalid), sent over HTTP to `teeroute gateway serve`
in front of an engine simulator, with a ledger and real keys.

Property, for every answer: no status >= 500, every 4xx an OpenAI error body, and the status,
content type, headers and body as the document says. Without a valid credential every
operation that needs one answers 401 or 403, in the same shape.

The budget is fixed and derandomized (tests/fuzz/budget.py): OPENAPI_EXAMPLES per operation
(authenticated) and a third of it unauthenticated; FUZZ_EXAMPLES=N runs N of each instead.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from requests.structures import CaseInsensitiveDict
from schemathesis.checks import not_a_server_error
from schemathesis.experimental import OPEN_API_3_1
from schemathesis.internal.checks import CheckContext, CheckFunction
from schemathesis.models import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from teeroute.sealing.frames import CONTENT_TYPE as SEALED_V2
from teeroute_gateway import openapi
from teeroute_gateway.openapi_models import ErrorBody
from tests.fuzz import budget
from tests.gateway.procs import Proc, create_key, engine, gateway, lease, write_config

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(budget.TIMEOUT_S)]

OPEN_API_3_1.enable()
SCHEMA = schemathesis.from_dict(
    orjson.loads(openapi.encoded()),  # a copy: the built document stays as served
    data_generation_methods=[
        schemathesis.DataGenerationMethod.positive,
        schemathesis.DataGenerationMethod.negative,
    ],
)
EXAMPLES = budget.LONG_RUN or int(os.environ.get("OPENAPI_EXAMPLES", "150"))
ADMIN = "tra-openapi-fuzz-admin"
ADMIN_PATHS = ("/v1/miners", "/v1/settlement")
MODEL = "sim-model"
MALFORMED_HTTP = "invalid_http_request"


def openai_error_shape(ctx: CheckContext, response: Any, case: Case) -> bool | None:
    """Every answer of 400 or more is `{"error": {message, type, code, param}}`."""
    if response.status_code >= 400:
        ErrorBody.model_validate_json(response.content)
    return None


def refused_without_credential(ctx: CheckContext, response: Any, case: Case) -> bool | None:
    """An operation that needs a key, called without a valid one: 401 or 403."""
    if case.operation.definition.raw.get("security") != openapi.BEARER:
        return None
    if response.status_code == 400:  # refused by the HTTP parser, before any handler
        assert ErrorBody.model_validate_json(response.content).error.code == MALFORMED_HTTP
    else:
        assert response.status_code in (401, 403), response.status_code
    return None


CHECKS: tuple[CheckFunction, ...] = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    openai_error_shape,
)
REQUEST_TIMEOUT_S = 15
"""A request not answered in this long is a hang, and fails the example."""


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str]]:
    tmp = tmp_path_factory.mktemp("openapi")
    with engine(tmp, "a", "--tokens-per-s", "0", "--ttft-ms", "0") as upstream:
        config = write_config(
            tmp / "gw.yaml",
            {"sim": [("sim-0", upstream.url)]},
            leases={"sim": [lease("sim-0", expires_in_s=3600)]},
            settings={"adminKeySha256": [hashlib.sha256(ADMIN.encode()).hexdigest()]},
        )
        key = create_key(config, "1000")
        with gateway(config) as proc:
            yield proc, key


def credential(case: Case, key: str) -> dict[str, str]:
    token = ADMIN if case.operation.path in ADMIN_PATHS else key
    return {"Authorization": f"Bearer {token}"}


@SCHEMA.hook
def map_body(context: Any, body: Any) -> Any:
    """Most generated model names are unknown (404): about half the bodies (chosen by their
    own length, so a failure reproduces) name the served model instead, so the router, the
    hold, the bill and the miner's answer are fuzzed too."""
    if isinstance(body, dict) and "model" in body and len(repr(body)) % 2 == 0:
        return {**body, "model": MODEL}
    return body


@schemathesis.serializer(SEALED_V2)
class SealedFrames:
    """Bodies of the sealed media type go out as the bytes generated for them."""

    def as_requests(self, context: Any, value: Any) -> dict[str, Any]:
        return {"data": raw_bytes(value)}

    def as_werkzeug(self, context: Any, value: Any) -> dict[str, Any]:
        return {"data": raw_bytes(value)}


def raw_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    data = getattr(value, "data", None)  # schemathesis' Binary, for format: binary
    return data if isinstance(data, bytes) else str(value).encode()


@SCHEMA.parametrize()
@fuzz_settings(EXAMPLES)
def test_authenticated_requests_get_documented_answers(
    case: Case, served: tuple[Proc, str]
) -> None:
    proc, key = served
    case.call_and_validate(
        base_url=proc.url,
        headers=credential(case, key),
        checks=CHECKS,
        timeout=REQUEST_TIMEOUT_S,
    )


WRONG_CREDENTIALS = ("", "Bearer tr-not-a-key", "Bearer " + "x" * 300, "the user's key")
"""No Authorization header; unknown keys; the user's own key where it is not enough (Basic
instead of Bearer on user endpoints, Bearer on admin endpoints)."""


def wrong_credential(case: Case, key: str) -> dict[str, str]:
    """One of WRONG_CREDENTIALS, picked by the case itself (so a failure reproduces)."""
    kind = WRONG_CREDENTIALS[len(repr(case.body)) % len(WRONG_CREDENTIALS)]
    if kind == WRONG_CREDENTIALS[-1]:
        scheme = "Bearer" if case.operation.path in ADMIN_PATHS else "Basic"
        return {"Authorization": f"{scheme} {key}"}
    return {"Authorization": kind} if kind else {}


@SCHEMA.parametrize()
@fuzz_settings(max(EXAMPLES // 3, len(WRONG_CREDENTIALS)))
def test_requests_without_a_valid_credential_are_refused(
    case: Case, served: tuple[Proc, str]
) -> None:
    proc, key = served
    case.headers = CaseInsensitiveDict(
        {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    )
    response = case.call(
        base_url=proc.url, headers=wrong_credential(case, key), timeout=REQUEST_TIMEOUT_S
    )
    case.validate_response(response, checks=(*CHECKS, refused_without_credential))
