"""POST /v1/attestations: fresh evidence for the client's own nonce (docs/sealed-mode.md, 5).

A client that seals its prompts trusts neither the gateway nor the operator: it picks the
nonce, and the gateway only carries it to each admitted enclave of the model (the agent's
`POST /v1/attestation`) and carries the evidence documents back. The client verifies them
itself (chain, signature, its own policy, report_data = sha512(its nonce || keys)).

Each call makes up to MAX_ENDPOINTS enclaves produce fresh evidence (a hardware report each),
so it is charged to the calling key like a request (`charge`): against the Route's request
limits for that key (shared with inference on the route), and against a per-key ceiling of
CHALLENGES_PER_MINUTE across models that holds even where the Route sets no limit. Over
either, the answer is 429 `rate_limit_error` with Retry-After, and no enclave is asked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import random
from typing import Any

import orjson

from teeroute_gateway.catalog import Endpoint, Pool, PublicModel
from teeroute_gateway.dispatch import Dispatcher
from teeroute_gateway.errors import BadRequest
from teeroute_gateway.limits import Limits, RateLimiter
from teeroute_gateway.requests import json_object
from teeroute_gateway.throttle import enforce
from teeroute_gateway.upstream import UpstreamError

MAX_ENDPOINTS = 16
"""At most this many enclaves are challenged per call (a random sample beyond)."""
TIMEOUT_S = 5.0
MAX_DOCUMENT = 256 * 1024
NONCE_BYTES = 32
CHALLENGES_PER_MINUTE = 30
"""Per API key, across models: fresh-evidence calls a minute, whatever the Routes allow (a
client verifying before each sealed request reuses the evidence for the enclave's key)."""


async def charge(limiter: RateLimiter, account_id: str, model: PublicModel) -> None:
    """Count one challenge against the key's limits; RateLimited (429) when over one."""
    rl = model.spec.rate_limits
    route = Limits(rpm=rl.requests_per_minute, tpm=rl.tokens_per_minute)
    scopes = [(f"{account_id}|attestations", Limits(rpm=CHALLENGES_PER_MINUTE), "attestations")]
    if not route.unlimited:
        scopes.append((f"{account_id}|{model.route_key}", route, model.name))
    for scope, limits, what in scopes:
        await enforce(limiter, scope, limits, what)


def parse_challenge(raw: bytes) -> tuple[str, str]:
    """(model, nonce as base64) from the request body; BadRequest names the field."""
    body = json_object(raw)
    model, nonce = body.get("model"), body.get("nonce")
    if not isinstance(model, str) or not model:
        raise BadRequest("model must be a non-empty string", param="model")
    try:
        decoded = base64.b64decode(nonce if isinstance(nonce, str) else "", validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != NONCE_BYTES:
        raise BadRequest(f"nonce must be base64 of {NONCE_BYTES} random bytes", param="nonce")
    return model, nonce  # type: ignore[return-value]  # checked above


def sealable_endpoints(
    model: PublicModel, now: dt.datetime, rng: random.Random
) -> list[tuple[Pool, Endpoint]]:
    found = [
        (b.pool, e)
        for b in model.backends
        for e in b.pool.endpoints
        if e.admitted(now) and e.hpke_public is not None
    ]
    return rng.sample(found, MAX_ENDPOINTS) if len(found) > MAX_ENDPOINTS else found


async def challenge(
    dispatcher: Dispatcher, targets: list[tuple[Pool, Endpoint]], nonce: str
) -> dict[str, Any]:
    body = orjson.dumps({"nonce": nonce})
    answers = await asyncio.gather(*(_one(dispatcher, e, body) for _, e in targets))
    data, unavailable = [], []
    for (pool, endpoint), doc in zip(targets, answers, strict=True):
        if doc is None:
            unavailable.append(endpoint.key)
        else:
            data.append(_entry(pool, endpoint, doc))
    return {"object": "list", "data": data, "unavailable": unavailable}


async def _one(dispatcher: Dispatcher, endpoint: Endpoint, body: bytes) -> Any:
    try:
        response = await dispatcher.upstream.request(
            dispatcher.origin(endpoint.url),
            b"POST",
            b"/v1/attestation",
            b"Content-Type: application/json\r\n",
            body,
            TIMEOUT_S,
        )
        raw = await response.read(TIMEOUT_S, MAX_DOCUMENT)
    except UpstreamError:
        return None
    if response.status != 200:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _entry(pool: Pool, endpoint: Endpoint, doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "pool": pool.name,
        "namespace": pool.namespace,
        "endpoint_id": endpoint.key,
        "tee": endpoint.tee,
        "hpke_key_sha256": endpoint.hpke_key_sha256,
        "signing_key_sha256": endpoint.signing_key_sha256,
        "pricing": {
            "input_per_million": str(pool.input_per_million),
            "output_per_million": str(pool.output_per_million),
            "currency": pool.currency,
        },
        "evidence": doc,
    }
