"""The gateway's SessionPool: one session per endpoint admission, bound to its lease, shared
by concurrent first requests, replaced when the admission changes, dropped when the endpoint
leaves or the lease ends. The enclave's end is the protocol's own (`enclave_end.py`)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time

import pytest

from teeroute_gateway.catalog import Endpoint
from teeroute_gateway.sessions import Handshake, SessionPool, params_for
from teeroute_gateway.upstream import UpstreamError

from .enclave_end import Enclave, enclave

GATEWAY = "gateway:" + "ab" * 32


def _pool(end: Enclave, delay_s: float = 0.0) -> SessionPool:
    async def handshake(endpoint: Endpoint, hello: bytes) -> bytes:
        await asyncio.sleep(delay_s)  # the network: requests pile up while it is open
        return await end.handshake(endpoint, hello)

    return SessionPool(handshake, GATEWAY, None)


def test_concurrent_first_requests_share_one_handshake() -> None:
    end = enclave()
    pool = _pool(end, delay_s=0.05)

    async def many() -> set[int]:
        found = await asyncio.gather(*(pool.get(end.endpoint) for _ in range(20)))
        again = await pool.get(end.endpoint)
        return {id(p) for p in [*found, again]}

    assert len(asyncio.run(many())) == 1
    assert end.hellos == 1 and pool.handshakes == 1


def test_the_session_is_bound_to_the_lease_and_the_evidence() -> None:
    end = enclave(lease_s=120)
    now = time.time()
    params = params_for(end.endpoint, GATEWAY, now)
    assert end.endpoint.expires_at is not None
    assert params.expires_at == int(end.endpoint.expires_at.timestamp())
    assert params.enclave_hpke_sha256 == end.endpoint.hpke_key_sha256
    assert params.enclave_signing_sha256 == end.endpoint.signing_key_sha256
    assert params.attested["tee"] == "simulated"
    ended = dataclasses.replace(end.endpoint, expires_at=dt.datetime.now(dt.UTC))
    with pytest.raises(UpstreamError, match="lease has ended"):
        params_for(ended, GATEWAY, now + 1)


def test_a_changed_admission_opens_a_new_session_and_retires_the_old() -> None:
    end = enclave()
    pool = _pool(end)
    first = asyncio.run(pool.get(end.endpoint))
    renewed = dataclasses.replace(
        end.endpoint, attested_at=dt.datetime.now(dt.UTC), expires_at=end.endpoint.expires_at
    )
    second = asyncio.run(pool.get(renewed))
    assert second is not first and end.hellos == 2
    assert pool.sessions() == [second] and pool.retired == [first]
    assert not first.alive(time.time())  # closed: nothing is sealed in it again


def test_sessions_of_endpoints_that_left_or_whose_lease_ended_are_dropped() -> None:
    staying, leaving = enclave("ns/p/a"), enclave("ns/p/b")
    pool = SessionPool(_route(staying, leaving), GATEWAY, None)
    kept = asyncio.run(pool.get(staying.endpoint))
    gone = asyncio.run(pool.get(leaving.endpoint))
    pool.prune([staying.endpoint], time.time())
    assert pool.sessions() == [kept] and gone in pool.retired
    pool.expire(time.time() + 10_000)  # past the lease
    assert pool.sessions() == [] and kept in pool.retired
    assert (staying.hellos, leaving.hellos) == (1, 1)


def _route(*ends: Enclave) -> Handshake:
    """One handshake function for several enclaves, each reached at its own endpoint."""

    async def handshake(endpoint: Endpoint, hello: bytes) -> bytes:
        end = next(e for e in ends if e.endpoint.key == endpoint.key)
        return await end.handshake(endpoint, hello)

    return handshake


def test_a_failed_handshake_reaches_every_waiter_and_is_not_kept() -> None:
    end = enclave()
    calls = 0

    async def refusing(endpoint: Endpoint, hello: bytes) -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise UpstreamError("sealed", "the enclave refused: 401 gateway_auth_invalid")
        return await end.handshake(endpoint, hello)

    pool = SessionPool(refusing, GATEWAY, None)

    async def run() -> list[object]:
        first = await asyncio.gather(
            *(pool.get(end.endpoint) for _ in range(5)), return_exceptions=True
        )
        return [*first, await pool.get(end.endpoint)]

    found = asyncio.run(run())
    assert all(isinstance(f, UpstreamError) for f in found[:5])
    assert not isinstance(found[5], Exception) and calls == 2


def test_a_forgotten_session_is_opened_again() -> None:
    end = enclave()
    pool = _pool(end)
    first = asyncio.run(pool.get(end.endpoint))
    pool.forget(first)
    assert asyncio.run(pool.get(end.endpoint)) is not first and end.hellos == 2
