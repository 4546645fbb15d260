"""The agent's refusals of sealed traffic: one exception, one table from sealing errors.

`SealedRejected(status, type, message)` is what `sealed.py` and `handshake.py` raise and
`server.py` answers as a clear OpenAI-style JSON error; the message names the check that
failed and never holds content or key bytes. `rejected(exc)` maps a `SealingError` from a
peer's frame to it: `frame.version` -> 400 `unsupported_wire_version` (a v1 body);
`session.id` / `session.expired` -> 409 `session_unknown`; `session.replay` -> 409
`sealed_request_replayed`; `session.key` -> 421 `sealed_key_mismatch`; other `frame.*` ->
400 `sealed_frame_invalid`; other authentication failures -> 400 `sealed_open_failed`;
other `session.*` -> 400 `session_invalid`; the rest 400 `sealed_envelope_invalid`.
"""

from __future__ import annotations

from teeroute.sealing.errors import FrameInvalid, OpenFailed, SealingError


class SealedRejected(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


_CHECKS = {
    "frame.version": (400, "unsupported_wire_version"),
    "session.id": (409, "session_unknown"),
    "session.expired": (409, "session_unknown"),
    "session.replay": (409, "sealed_request_replayed"),
    "session.key": (421, "sealed_key_mismatch"),
    "session.signing_key": (400, "session_invalid"),
}


def rejected(exc: SealingError) -> SealedRejected:
    """The refusal a sealing error from a peer's frame becomes (the table above)."""
    status, kind = _CHECKS.get(exc.check, (400, _kind(exc)))
    detail = exc.detail
    if kind == "unsupported_wire_version":
        detail = "this agent speaks only wire v2 (application/vnd.teeroute.sealed.v2)"
    return SealedRejected(status, kind, f"{exc.check}: {detail}")


def _kind(exc: SealingError) -> str:
    if isinstance(exc, FrameInvalid):
        return "sealed_frame_invalid"
    if isinstance(exc, OpenFailed):
        return "sealed_open_failed"
    if exc.check.startswith(("session.", "hello.")):
        return "session_invalid"
    return "sealed_envelope_invalid"


def unsupported_v1() -> SealedRejected:
    return SealedRejected(
        400,
        "unsupported_wire_version",
        "frame.version: a v1 sealed message (application/vnd.teeroute.sealed+json); this "
        "agent speaks only wire v2 (application/vnd.teeroute.sealed.v2)",
    )


def unknown_session(check: str, kind: str) -> SealedRejected:
    """409 `session_unknown`; the message starts with `session.id` for the gateway's own
    session (it opens a new one) and `client.session` for the client's (the client does)."""
    return SealedRejected(
        409,
        "session_unknown",
        f"{check}: no open {kind} session with this id (unknown, expired or closed); "
        "open a new one (POST /v1/sessions)",
    )


def invalid(check: str, detail: str) -> SealedRejected:
    return SealedRejected(400, "sealed_envelope_invalid", f"{check}: {detail}")


def key_mismatch() -> SealedRejected:
    return SealedRejected(421, "sealed_key_mismatch", "key_id: sealed to another enclave key")


def open_failed(exc: OpenFailed) -> SealedRejected:
    return SealedRejected(400, "sealed_open_failed", f"{exc.check}: {exc.detail}")
