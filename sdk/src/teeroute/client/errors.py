"""The client's errors. Messages name checks, endpoints and statuses, never content or keys.

TeerouteError
├── UsageError (attestation.cli)
│   └── PolicyError            a client policy file that cannot be used (names the field)
├── AttestationRefused         no enclave of the model passed our own verification
├── GatewayError               the gateway answered with an error of its own (in clear)
├── GatewayUnreachable         no answer from the gateway at all
├── InvalidRequest             a request body we cannot seal (not JSON, no model)
└── SealingError (sealing.errors)
    └── ResponseInvalid        a sealed response that fails a check of ours: unsealed,
                               truncated, without a receipt, receipt for another answer
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from teeroute.attestation.cli import UsageError
from teeroute.errors import TeerouteError
from teeroute.sealing.errors import SealingError

if TYPE_CHECKING:
    from teeroute.client.attest import RefusedEnclave


class PolicyError(UsageError):
    def __init__(self, source: str, field: str, detail: str) -> None:
        super().__init__(f"policy {source}: {field}: {detail}")
        self.field = field


class AttestationRefused(TeerouteError):
    """Nothing was sealed or sent: every enclave offered for the model failed a check."""

    exit_code = 5

    def __init__(self, model: str, refused: Sequence[RefusedEnclave]) -> None:
        if refused:
            named = "; ".join(f"{r.endpoint_id} ({r.tee or '?'}): {r.reason}" for r in refused)
            message = f"no enclave serving {model!r} passed attestation: {named}"
        else:
            message = f"the gateway offered no attested enclave for {model!r}"
        super().__init__(message)
        self.model = model
        self.refused = tuple(refused)

    @property
    def unavailable(self) -> bool:
        """True when no enclave was refused on its evidence: none answered (or none exist)."""
        return all(r.failed == ("attestation.unavailable",) for r in self.refused)

    @property
    def checks(self) -> list[str]:
        """Every failed check, once, in the order first seen."""
        return list(dict.fromkeys(c for r in self.refused for c in r.failed))


class GatewayError(TeerouteError):
    """An error answer of the gateway's own (OpenAI error JSON, never sealed)."""

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.error = _error_object(body)
        message = self.error.get("message") if self.error else None
        super().__init__(f"gateway answered {status}: {message or 'no error message'}")

    @property
    def code(self) -> str | None:
        code = self.error.get("code") if self.error else None
        return code if isinstance(code, str) else None


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    error = doc.get("error") if isinstance(doc, dict) else None
    return error if isinstance(error, dict) else {}


class GatewayUnreachable(TeerouteError):
    exit_code = 6

    @classmethod
    def of(cls, url: str, exc: BaseException) -> GatewayUnreachable:
        """No answer from `url` because of `exc`; a TLS certificate we did not accept (with
        `--require-attested-gateway`: not the one the gateway attested) is named as such."""
        if _certificate_refused(exc):
            return cls(
                f"gateway {url}: TLS: its certificate is not the one accepted "
                "(with --require-attested-gateway: not the certificate the gateway attested; "
                "restart to attest it again)"
            )
        return cls(f"gateway {url}: {type(exc).__name__}")


def _certificate_refused(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 8:  # httpx -> httpcore -> ssl
        if isinstance(exc, ssl.SSLCertVerificationError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class InvalidRequest(TeerouteError):
    exit_code = 2

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"{param}: {detail}")
        self.param = param


class ResponseInvalid(SealingError):
    pass
