"""The enclave's end of a wire v2 session, in-process, for the gateway's unit tests: real keys,
the real `session.accept`, `Reply` and receipt/root functions the agent uses, so the gateway's
Hop, SessionPool and judgement are tested against the protocol itself (the end-to-end tests
run the real agent process)."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from teeroute.sealing import frames, hpke
from teeroute.sealing.batcher import RootBatcher
from teeroute.sealing.receipt_mac import GATEWAY_TAG, issue_receipt
from teeroute.sealing.session import Reply, Session, accept, parse_hello
from teeroute_gateway.catalog import Endpoint

REQUEST_ID = "gen-1"


@dataclass
class Enclave:
    """One enclave: its keys, the endpoint that lists it, and the sessions it accepted."""

    hpke_private: x25519.X25519PrivateKey
    hpke_public: bytes
    signing: ed25519.Ed25519PrivateKey
    endpoint: Endpoint
    sessions: dict[bytes, tuple[Session, RootBatcher]] = field(default_factory=dict)
    hellos: int = 0

    @property
    def signing_public(self) -> bytes:
        return self.signing.public_key().public_bytes_raw()

    async def handshake(self, endpoint: Endpoint, hello: bytes) -> bytes:
        """What POST /v1/sessions does: accept the HELLO, answer the WELCOME payload."""
        self.hellos += 1
        parsed = parse_hello(frames.decode_one(hello).payload)
        sha = hashlib.sha256(self.signing_public).hexdigest()
        welcome, session = accept(parsed, self.hpke_private, self.hpke_public, sha, time.time())
        batcher = RootBatcher(
            session_id=session.id,
            sign=self.signing.sign,
            signing_public=self.signing_public,
            hpke_key_sha256=self.endpoint.hpke_key_sha256,
            batch_size=2,
        )
        self.sessions[session.id] = (session, batcher)
        return frames.decode_one(welcome).payload

    def answer(
        self, request: bytes, pieces: list[bytes], tag_with: bytes | None = None, **counts: Any
    ) -> bytes:
        """The answer body to a REQUEST frame: CHUNKs, the final one, the RECEIPT (tagged
        with the receipt key of session `tag_with`, by default the request's) and a ROOT when
        the batch (2 receipts) is due."""
        payload = frames.decode_one(request).payload
        session, batcher = self.sessions[payload[:16]]
        _, _, reply = session.open_request(payload, time.time())
        body = b"".join(reply.chunk(p) for p in pieces) + reply.chunk(b"", final=True)
        key = self.sessions[tag_with or session.id][0].receipt_key
        receipt, root = issue_receipt(
            batcher, self.receipt(reply, **counts), [(GATEWAY_TAG, key)], time.time()
        )
        return body + receipt + (root or b"")

    def receipt(self, reply: Reply, **counts: Any) -> dict[str, Any]:
        return {
            "request_id": counts.get("request_id", REQUEST_ID),
            "model": "m",
            "served_model": "m",
            "input_tokens": counts.get("input_tokens", 1),
            "output_tokens": counts.get("output_tokens", 2),
            "usage_source": "engine",
            "status": 200,
            "complete": True,
            "request_sha256": reply.request_sha256,
            "response_sha256": reply.response_sha256,
            "hpke_key_sha256": self.endpoint.hpke_key_sha256,
            "signing_key_sha256": self.endpoint.signing_key_sha256,
            "issued_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def enclave(key: str = "ns/p/e", lease_s: float = 300, attested_ago_s: float = 10) -> Enclave:
    private, public = hpke.generate_key_pair()
    signing = ed25519.Ed25519PrivateKey.generate()
    now = dt.datetime.now(dt.UTC)
    endpoint = Endpoint(
        key,
        "ns/p",
        "http://x",
        "simulated",
        attested_at=now - dt.timedelta(seconds=attested_ago_s),
        expires_at=now + dt.timedelta(seconds=lease_s),
        hpke_key_sha256=hashlib.sha256(public).hexdigest(),
        signing_key_sha256=hashlib.sha256(signing.public_key().public_bytes_raw()).hexdigest(),
        hpke_public=public,
    )
    return Enclave(private, public, signing, endpoint)
