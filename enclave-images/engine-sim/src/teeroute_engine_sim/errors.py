"""Errors of the engine simulator, each mapped to an OpenAI error body in one place.

    EngineError               base: HTTP status, OpenAI `type` and `code`
    ├── InvalidRequest        400 invalid_request_error (bad JSON, missing or wrong fields)
    ├── ModelNotFound         404 invalid_request_error / model_not_found
    ├── RouteNotFound         404 invalid_request_error / not_found (no such endpoint)
    ├── MethodNotAllowed      405 invalid_request_error / method_not_allowed
    ├── InvalidApiKey         401 invalid_request_error / invalid_api_key (--api-key-env)
    └── SimulatedFailure      500 server_error / simulated_failure (the --fail-rate)
    SettingsInvalid           bad flags or environment at start (a TeerouteError: exit code 2)

The request parser raises them; the app turns them into responses with `error_body`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from teeroute.errors import TeerouteError


class EngineError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        """The OpenAI error shape: {"error": {"message", "type", "param", "code"}}."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(EngineError):
    status = 400
    type = "invalid_request_error"


class ModelNotFound(EngineError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist.", param="model")


class RouteNotFound(EngineError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(EngineError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class InvalidApiKey(EngineError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class SimulatedFailure(EngineError):
    status = 500
    type = "server_error"
    code = "simulated_failure"

    def __init__(self) -> None:
        super().__init__("The engine simulator failed this request on purpose (--fail-rate).")


class SettingsInvalid(TeerouteError):
    exit_code = 2
