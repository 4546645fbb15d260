"""The gateway's OpenAPI 3.1 document, served at GET /openapi.json (app.py) and committed as
docs/openapi.json (tests/gateway/test_openapi_document.py keeps that copy current).

Every schema comes from the typed models in `openapi_models.py` (pydantic JSON schema), so
the document and the models cannot drift apart; this module only says which operation takes
and answers which model, with which status codes. Every error status answers the OpenAI
error shape (`ErrorBody`, errors.py). The tests fuzz the live gateway against this document
(tests/gateway/test_openapi_fuzz.py, schemathesis): a route added to app.py without an
operation here fails there.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from teeroute.sealing.frames import CONTENT_TYPE as SEALED_V2
from teeroute_gateway import openapi_models as m

REF = "#/components/schemas/{model}"
JSON = "application/json"
SSE = "text/event-stream"
METRICS = "text/plain; version=0.0.4; charset=utf-8"
BEARER: list[dict[str, list[str]]] = [{"apiKey": []}]
HEADER_VALUE = {"type": "string", "pattern": "^[\\x20-\\x7e]*$"}
"""What HTTP carries in a header value (visible ASCII); the parser refuses control bytes."""
PERIOD_BOUND = {
    "description": "an RFC 3339 time or a date (midnight UTC)",
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}],
}
PUBLIC: list[dict[str, list[str]]] = []
ERRORS = {
    "400": "the request is malformed: a body that is not JSON, a field of the wrong type; "
    "or the HTTP request itself (code invalid_http_request, on every path)",
    "401": "no API key, or one the gateway does not know",
    "402": "the key's credit or spending limit does not cover the request's worst case",
    "403": "the key may not call this (admin endpoints)",
    "404": "no such model, generation or path; no provider meets the `provider` object",
    "405": "the path exists, with another method",
    "408": "the request's head or body took too long to arrive (docs/gateway-limits.md)",
    "409": "a sealed request names a session the gateway does not know",
    "413": "the body is over the size limit",
    "431": "the request line and headers are over their size or count limit",
    "429": "over a rate limit (the Retry-After header says when to retry)",
    "502": "every miner tried failed",
    "503": "no attested endpoint, the ledger or the limiter unreachable, still starting, or "
    "overloaded (with Retry-After; on every path)",
    "504": "the miner did not answer in time",
}
SERVER_SIDE = ("503",)
ANY_PATH = ("400", "408", "431", "503")
"""What the connection itself may answer before any route (http_protocol.py, protocol.py)."""
INFERENCE_ERRORS = ("400", "401", "402", "404", "409", "413", "429", "502", "503", "504")
MODELS: tuple[type[BaseModel], ...] = (
    m.ErrorBody,
    m.ChatCompletionRequest,
    m.CompletionRequest,
    m.Completion,
    m.ModelList,
    m.AttestationList,
    m.ChallengeRequest,
    m.ChallengeAnswer,
    m.NonceRequest,
    m.GatewayEvidence,
    m.GenerationAnswer,
    m.Scoreboard,
    m.Weights,
    m.BittensorWeights,
    m.Settlement,
    m.Status,
)


@cache
def document() -> dict[str, Any]:
    """The whole document (built once: it depends on nothing but the code)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "teeroute gateway",
            "version": "v1",
            "description": "OpenAI-compatible routing to attested miners (docs/openapi.md).",
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": {code: _error(text) for code, text in ERRORS.items()},
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key made with `teeroute keys create` (or an admin "
                    "key, for the admin endpoints)",
                }
            },
        },
    }


@cache
def encoded() -> bytes:
    """The document as served and committed: sorted keys, indented, a final newline."""
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def _schemas() -> dict[str, Any]:
    _, found = models_json_schema([(model, "validation") for model in MODELS], ref_template=REF)
    return dict(found["$defs"])


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(m.ErrorBody)}}}


def _answers(ok: dict[str, Any], *errors: str) -> dict[str, Any]:
    """200 with `ok`, then each error status (and ANY_PATH's) as its shared response."""
    found = {"200": ok}
    codes = sorted({*ANY_PATH, *errors})
    found.update({code: {"$ref": f"#/components/responses/{code}"} for code in codes})
    return found


def _ok(description: str, model: type[BaseModel], media: str = JSON) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": _ref(model)}}}


def _operation(
    summary: str,
    responses: dict[str, Any],
    *,
    security: list[dict[str, list[str]]] = BEARER,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    found: dict[str, Any] = {"summary": summary, "security": security, "responses": responses}
    if body is not None:
        found["requestBody"] = {"required": True, "content": body}
    if parameters:
        found["parameters"] = parameters
    return found


def _query(
    name: str, description: str, required: bool = False, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _json_body(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": _ref(model), "examples": {"valid": {"value": example}}}}


def _sealed_body() -> dict[str, Any]:
    return {SEALED_V2: {"schema": {"type": "string", "format": "binary"}}}


def _paths() -> dict[str, Any]:
    return {
        "/v1/chat/completions": {"post": _inference(m.ChatCompletionRequest, m.CHAT_EXAMPLE)},
        "/v1/completions": {"post": _inference(m.CompletionRequest, m.COMPLETION_EXAMPLE)},
        "/v1/models": {"get": _models()},
        "/v1/attestations": {"get": _attestations(), "post": _challenge()},
        "/v1/gateway/attestation": {"post": _gateway_attestation()},
        "/v1/sessions": {"post": _sessions()},
        "/v1/generation": {"get": _generation()},
        "/v1/miners": {"get": _miners()},
        "/v1/settlement": {"get": _settlement()},
        "/healthz": {"get": _probe("liveness: the process answers", ())},
        "/readyz": {"get": _probe("readiness: the gateway has a catalog", SERVER_SIDE)},
        "/metrics": {"get": _metrics()},
        "/openapi.json": {"get": _self()},
    }


def _inference(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    ok = {
        "description": "the miner's answer, with usage.cost and provider added; a stream "
        "(stream: true) of server-sent events ending in a usage chunk; a sealed answer for "
        "a sealed request",
        "content": {
            JSON: {"schema": _ref(m.Completion)},
            SSE: {"schema": {"type": "string"}},
            SEALED_V2: {"schema": {"type": "string", "format": "binary"}},
        },
    }
    return _operation(
        "inference, routed to an attested miner and billed to the key",
        _answers(ok, *INFERENCE_ERRORS),
        body={**_json_body(model, example), **_sealed_body()},
        parameters=[
            {
                "name": "x-session-id",
                "in": "header",
                "required": False,
                "description": "sticky routing: requests with one id prefer one endpoint",
                "schema": HEADER_VALUE,
            }
        ],
    )


def _models() -> dict[str, Any]:
    ok = _ok("the models, their prices and TEE types", m.ModelList)
    return _operation("the models served", _answers(ok, "503"), security=PUBLIC)


def _attestations() -> dict[str, Any]:
    ok = _ok("the current verdict of each admitted endpoint", m.AttestationList)
    return _operation(
        "current evidence of a model's endpoints",
        _answers(ok, "400", "404", "503"),
        security=PUBLIC,
        parameters=[_query("model", "the model's name", required=True)],
    )


def _challenge() -> dict[str, Any]:
    ok = _ok("fresh evidence from each sealable endpoint for the nonce", m.ChallengeAnswer)
    example = {"model": "sim-model", "nonce": "A" * 43 + "="}
    return _operation(
        "fresh evidence for the client's own nonce (sealed mode)",
        _answers(ok, "400", "401", "404", "413", "429", "503"),
        body=_json_body(m.ChallengeRequest, example),
    )


def _gateway_attestation() -> dict[str, Any]:
    ok = _ok("the gateway's own evidence, bound to its TLS key", m.GatewayEvidence)
    return _operation(
        "the gateway's own evidence (its setting tee is not off; 404 otherwise)",
        _answers(ok, "400", "404", "413", "503"),
        security=PUBLIC,
        body=_json_body(m.NonceRequest, {"nonce": "A" * 43 + "="}),
    )


def _sessions() -> dict[str, Any]:
    ok = {"description": "the enclave's WELCOME frame", "content": _sealed_body()}
    return _operation(
        "open the client's own session with an enclave (a client HELLO frame)",
        _answers(ok, "400", "401", "413", "429", "502", "503"),
        body=_sealed_body(),
        parameters=[
            {
                "name": "x-teeroute-enclave-key",
                "in": "header",
                "required": False,
                "description": "the key id of the enclave the HELLO is for",
                "schema": HEADER_VALUE,
            }
        ],
    )


def _generation() -> dict[str, Any]:
    ok = _ok("the key's own usage record of the request", m.GenerationAnswer)
    return _operation(
        "the metered record of one request",
        _answers(ok, "401", "404", "503"),
        parameters=[_query("id", "the request id (x-request-id of the answer)")],
    )


def _miners() -> dict[str, Any]:
    ok = {
        "description": "the scoreboard, or (format=weights) the normalised weights, or "
        "(format=bittensor) u16 weights per miner uid",
        "content": {
            JSON: {
                "schema": {"anyOf": [_ref(m.Scoreboard), _ref(m.Weights), _ref(m.BittensorWeights)]}
            }
        },
    }
    return _operation(
        "admin: the miners' scoreboard",
        _answers(ok, "401", "403", "503"),
        parameters=[
            _query("format", "`weights`: the weights alone; `bittensor`: u16 weights per uid")
        ],
    )


def _settlement() -> dict[str, Any]:
    ok = _ok("usage and amounts per pool over [from, to)", m.Settlement)
    return _operation(
        "admin: the settlement report",
        _answers(ok, "400", "401", "403", "503"),
        parameters=[
            _query("from", "default 30 days before `to`", schema=PERIOD_BOUND),
            _query("to", "default now", schema=PERIOD_BOUND),
        ],
    )


def _probe(summary: str, errors: tuple[str, ...]) -> dict[str, Any]:
    return _operation(summary, _answers(_ok("the status", m.Status), *errors), security=PUBLIC)


def _metrics() -> dict[str, Any]:
    ok = {"description": "Prometheus metrics", "content": {METRICS: {"schema": {"type": "string"}}}}
    return _operation(
        "Prometheus metrics (a bearer token when metricsTokenSha256 is set)",
        _answers(ok, "401", "503"),
        security=[*BEARER, {}],
    )


def _self() -> dict[str, Any]:
    ok = {"description": "this document", "content": {JSON: {"schema": {"type": "object"}}}}
    return _operation("the OpenAPI document", _answers(ok), security=PUBLIC)


def main(argv: list[str]) -> int:
    """`python -m teeroute_gateway.openapi FILE`: write the document (docs/openapi.json)."""
    if len(argv) != 1:
        print("usage: python -m teeroute_gateway.openapi FILE", file=sys.stderr)
        return 2
    Path(argv[0]).write_bytes(encoded())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
