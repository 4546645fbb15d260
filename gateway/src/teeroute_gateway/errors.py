"""Every error the gateway answers with, and its OpenAI-shaped body.

    GatewayError (status, type, code)
    ├── BadRequest            400 invalid_request_error   malformed JSON, bad fields
    ├── Unauthorized          401 authentication_error    missing or unknown API key
    ├── PaymentRequired       402 insufficient_quota      credit or budget too small
    ├── Forbidden             403 permission_error        admin endpoints
    ├── NotFound              404 not_found_error         unknown model or path, no provider matches
    ├── UnsupportedWireVersion  400 unsupported_wire_version  a v1 sealed body
    ├── SessionUnknown        409 session_unknown         a client session unknown here
    ├── MethodNotAllowed      405 invalid_request_error
    ├── RequestTimeout        408 invalid_request_error   head or body not sent in time
    ├── PayloadTooLarge       413 invalid_request_error   body over the limit
    ├── HeadersTooLarge       431 invalid_request_error   request line + headers over the limit
    ├── RateLimited           429 rate_limit_error        rpm/tpm of the key on this route
    ├── UpstreamFailed        502 upstream_error          every candidate failed
    ├── Unavailable           503 service_unavailable     no attested endpoint, limiter down
    └── UpstreamTimeout       504 timeout

`body()` is what clients see: `{"error": {"message", "type", "code", "param"}}`. Messages
never contain prompt content or key material.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }

    def encoded(self) -> bytes:
        return orjson.dumps(self.body())


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class UnsupportedWireVersion(GatewayError):
    status = 400
    type = "unsupported_wire_version"


class SessionUnknown(GatewayError):
    status = 409
    type = "session_unknown"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"


class PaymentRequired(GatewayError):
    status = 402
    type = "insufficient_quota"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"


class HeadersTooLarge(GatewayError):
    status = 431
    type = "invalid_request_error"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"


class UpstreamFailed(GatewayError):
    status = 502
    type = "upstream_error"


class Unavailable(GatewayError):
    status = 503
    type = "service_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "timeout"


def upstream_status_error(status: int, detail: str) -> GatewayError:
    """The error to pass on when the last candidate answered with an error status."""
    if status == 429:
        return RateLimited(f"the miners are busy: {detail}", code="upstream_rate_limited")
    if status == 504:
        return UpstreamTimeout(detail, code="upstream_timeout")
    return UpstreamFailed(detail, code="upstream_error")
