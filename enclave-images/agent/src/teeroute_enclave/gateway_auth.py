"""Who the agent answers: inference only for the gateway (docs/sealed-mode.md, section 8).

`server.py` asks `Callers.check` before any request reaches the engine (completions, sealed or
plain, and the model list: a relay's engine spends its released upstream key on each). The
header format and signature are `teeroute.sealing.gateway_auth`; this module adds the agent's
policy around them:

- no gateway key pinned (TEEROUTE_AGENT_GATEWAY_KEYS unset): every such request is refused,
  403 `gateway_auth_disabled` (fail closed), unless TEEROUTE_AGENT_ALLOW_ANY_CALLER turned
  the check off (local development only; the agent says so at start);
- the header must be signed by a pinned key for this method, path and body, to this
  enclave's own HPKE key, within the window of the enclave's clock: else 401
  `gateway_auth_missing`, `gateway_auth_invalid` or `gateway_auth_stale`;
- each nonce is taken once while it could pass the time check (a `replay.ReplayGuard` of
  its own, the sealed requests' guard, with its bounded memory): else 401
  `gateway_auth_replayed`, or 503 `gateway_auth_busy` when it remembers too many to take
  another. Only verified nonces are remembered, so no one but the gateway can fill it.

Evidence, /healthz and secret releases need no gateway authorization: evidence is public by
design, and a release is signed by the operator's release key.
"""

from __future__ import annotations

from collections.abc import Sequence

from teeroute.sealing import gateway_auth
from teeroute.sealing.gateway_auth import HEADER, Refused
from teeroute_enclave import replay

DEFAULT_WINDOW_S = 60
_GUARD_KINDS = {
    "sealed_request_replayed": (
        401,
        "gateway_auth_replayed",
        f"{HEADER}: this authorization was already used; the gateway signs each request anew",
    ),
    "sealed_request_stale": (
        401,
        "gateway_auth_stale",
        f"{HEADER}: older than what the enclave's clock has seen, outside its window",
    ),
    "replay_cache_full": (
        503,
        "gateway_auth_busy",
        "the agent remembers too many recent requests to take another now",
    ),
}


class Callers:
    """The agent's caller check: the pinned gateway keys, the window, the nonces seen."""

    def __init__(
        self,
        pinned: Sequence[bytes] = (),
        window_s: int = DEFAULT_WINDOW_S,
        *,
        allow_any: bool = False,
        guard: replay.ReplayGuard | None = None,
    ) -> None:
        self.pinned = tuple(pinned)
        self.window_s = window_s
        self.allow_any = allow_any
        self._guard = replay.ReplayGuard(window_s) if guard is None else guard

    def precheck(self, value: str | None) -> None:
        """Refuses before the body is read: no key pinned, or no header at all."""
        if self.allow_any:
            return
        if not self.pinned:
            raise Refused(
                403,
                "gateway_auth_disabled",
                "this agent pins no gateway key (TEEROUTE_AGENT_GATEWAY_KEYS): it answers "
                "no inference",
            )
        gateway_auth.parse(value)

    def check(
        self,
        value: str | None,
        method: str,
        path: str,
        body: bytes,
        hpke_key_sha256: str,
        now: float,
    ) -> None:
        """Passes when a pinned gateway key authorized exactly this request to this enclave,
        recently and for the first time; Refused otherwise."""
        self.precheck(value)
        if self.allow_any:
            return
        window_ms = self.window_s * 1000
        found = gateway_auth.verify(
            value, self.pinned, method, path, body, hpke_key_sha256, int(now * 1000), window_ms
        )
        try:
            self._guard.remember(b"gateway:" + found.nonce, found.issued_ms // 1000, now)
        except replay.Refused as exc:
            status, kind, message = _GUARD_KINDS.get(exc.kind, (exc.status, exc.kind, ""))
            raise Refused(status, kind, message or exc.message) from None
