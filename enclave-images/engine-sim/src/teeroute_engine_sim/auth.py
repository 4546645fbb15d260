"""`--api-key-env NAME`: every /v1/ request must bear `Authorization: Bearer <$NAME>`, as a
closed-model provider's API does (the stand-in behind a relay miner). Others get 401 with an
OpenAI error body (`invalid_api_key`) that never repeats what was sent. /health stays open.

A pure ASGI middleware: one header comparison in constant time, nothing else on the hot path.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from starlette.responses import Response

from teeroute_engine_sim.errors import InvalidApiKey, SettingsInvalid
from teeroute_engine_sim.responses import dumps
from teeroute_engine_sim.settings import EngineSettings

PROTECTED = "/v1/"
MISSING = "Missing API key: send it as `Authorization: Bearer <key>`."
INCORRECT = "Incorrect API key provided."


def api_key(settings: EngineSettings) -> str | None:
    """The key requests must bear, from the variable the settings name; None: no key. A
    named variable that is unset or empty is refused (an engine meant to be closed must not
    serve openly)."""
    if not settings.api_key_env:
        return None
    key = os.environ.get(settings.api_key_env, "")
    if not key:
        raise SettingsInvalid(
            f"invalid engine-sim settings: api_key_env: ${settings.api_key_env} is unset or empty"
        )
    return key


class RequireApiKey:
    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self._key = key.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _protected(scope["path"]):
            problem = self._problem(scope["headers"])
            if problem is not None:
                error = InvalidApiKey(problem)
                response = Response(
                    dumps(error.body()),
                    error.status,
                    {"WWW-Authenticate": "Bearer"},
                    "application/json",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _problem(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        sent = [value for name, value in headers if name.lower() == b"authorization"]
        if not sent:
            return MISSING
        scheme, _, token = sent[0].partition(b" ")
        if len(sent) > 1 or scheme.lower() != b"bearer":  # schemes ignore case (RFC 9110)
            return INCORRECT
        return None if hmac.compare_digest(token.strip(b" "), self._key) else INCORRECT


def _protected(path: str) -> bool:
    return path.startswith(PROTECTED) or path == PROTECTED.rstrip("/")
