"""The I/O of secret release: read a pool's Secrets (once per sweep; nothing is kept longer;
only for a pool that pins measurements, and only Secrets that name the pool: release.py),
and POST them to an enclave agent's `/v1/secrets`, signed by the operator's release key and
sealed to the HPKE key of the evidence the operator has just verified (docs/sealed-mode.md,
section 4).

A value never leaves this module except sealed: failures are described by Secret, key and
HTTP status only, never by content (an apiserver or agent message is not repeated either; of
an agent's refusal only its known error type is named).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import httpx

from teeroute.api.minerpool import MinerPool
from teeroute.kube import ApiError, Kube, paths
from teeroute.sealing.envelope import SEALED_CONTENT_TYPE
from teeroute.sealing.errors import SealingError
from teeroute.sealing.secrets import PATH, Signer, seal_secrets
from teeroute.wire import WireError, aread_capped
from teeroute_operator import release
from teeroute_operator.release import Loaded, NoSecrets, SecretSet, SecretVersion, Unavailable

Obj = dict[str, Any]
RELEASED = 204
MAX_REFUSAL = 4096
"""Bytes of an agent's refusal read for its error type (a miner may answer without end)."""
REFUSALS = {
    "secret_release_disabled": "the agent pins no release key",
    "release_refused": "the agent refused the release's signature",
    "release_stale": "the agent holds a newer release",
}
"""The agent's refusals of a release (its error `type`), and what they mean."""


async def load(kube: Kube, pool: MinerPool) -> SecretSet:
    """The pool's secrets, after the pool's and each Secret's consent (release.py): nothing
    is read for a pool that pins no measurement; each Secret is read once (`get`) and must
    name the pool in its release-to annotation. A missing Secret or key, one the operator may
    not read, or one not offered to the pool makes the whole set unavailable. Other apiserver
    errors raise (the sweep is retried, the leases carry the endpoints meanwhile)."""
    wanted = pool.spec.secrets
    if not wanted:
        return NoSecrets()
    unpinned = release.pinning_problem(pool.spec.attestation.allowed_measurements)
    if unpinned is not None:
        return Unavailable(unpinned)
    read: dict[str, Obj] = {}
    values: dict[str, str] = {}
    versions = []
    for entry in wanted:
        ref = entry.secret_key_ref
        if ref.name not in read:
            found = await _read(kube, pool, ref.name, entry.name)
            if isinstance(found, Unavailable):
                return found
            read[ref.name] = found
        value = _value(read[ref.name], ref.name, ref.key, entry.name)
        if isinstance(value, Unavailable):
            return value
        values[entry.name] = value
        meta = read[ref.name].get("metadata") or {}
        version = str(meta.get("resourceVersion", "")) if isinstance(meta, dict) else ""
        versions.append(SecretVersion(entry.name, ref.name, ref.key, version))
    return Loaded(tuple(versions), values)


async def _read(kube: Kube, pool: MinerPool, name: str, entry: str) -> Obj | Unavailable:
    """Secret `name` of the pool's namespace, if it may be read and is offered to the pool."""
    namespace = pool.metadata.namespace
    try:
        secret: Obj = await kube.get(f"{paths.collection('v1', 'Secret', namespace)}/{name}")
    except ApiError as exc:
        if exc.not_found:
            return Unavailable(f'{release.FOUND_CHECK}: Secret "{name}" not found (secret {entry})')
        if exc.status == 403:
            return Unavailable(
                f'{release.READABLE_CHECK}: the operator may not read Secret "{name}" '
                f"(HTTP 403; grant it `get` on that Secret by name) (secret {entry})"
            )
        raise
    meta = secret.get("metadata") or {}
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    problem = release.opt_in_problem(
        name, annotations if isinstance(annotations, dict) else None, pool.metadata.name
    )
    return secret if problem is None else Unavailable(f"{problem} (secret {entry})")


def _value(secret: Obj, name: str, key: str, entry: str) -> str | Unavailable:
    data = secret.get("data") or {}
    if not isinstance(data, dict) or key not in data:
        return Unavailable(
            f'{release.FOUND_CHECK}: Secret "{name}" has no key "{key}" (secret {entry})'
        )
    try:
        return base64.b64decode(str(data[key]), validate=True).decode()
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return Unavailable(
            f'{release.FOUND_CHECK}: key "{key}" of Secret "{name}" is not UTF-8 text '
            f"(secret {entry})"
        )


async def deliver(
    client: httpx.AsyncClient,
    agent_url: str,
    hpke_public_b64: str,
    pool: str,
    values: Mapping[str, str],
    signer: Signer,
    issued_ns: int,
) -> str | None:
    """POST the secrets, signed by `signer` as issued at `issued_ns` (ns since the epoch; the
    agent applies only a release newer than the last it applied) and sealed, to the agent at
    `agent_url`; None when it took them (204), else why not."""
    try:
        hpke_public = base64.b64decode(hpke_public_b64, validate=True)
        body = seal_secrets(hpke_public, pool, values, signer, issued_ns)
    except SealingError as exc:
        return f"cannot seal to the attested key ({exc.check})"
    except (binascii.Error, ValueError) as exc:
        return f"cannot seal to the attested key ({type(exc).__name__})"
    try:
        status, answer = await _post(client, agent_url.rstrip("/") + PATH, body)
    except httpx.TimeoutException:
        return "the agent timed out"
    except httpx.HTTPError as exc:
        return f"the agent could not be reached ({type(exc).__name__})"
    if status != RELEASED:
        return _refusal(status, answer)
    return None


async def _post(client: httpx.AsyncClient, url: str, body: bytes) -> tuple[int, bytes]:
    """The agent's status and, when it refused, its error body: read up to MAX_REFUSAL bytes
    (a longer one is no refusal we know, and is left unread)."""
    headers = {"Content-Type": SEALED_CONTENT_TYPE, "Accept-Encoding": "identity"}
    async with client.stream("POST", url, content=body, headers=headers) as response:
        if response.status_code == RELEASED:
            return RELEASED, b""
        try:
            return response.status_code, await aread_capped(response, MAX_REFUSAL, "refusal")
        except WireError:
            return response.status_code, b""


def _refusal(status_code: int, answer: bytes) -> str:
    status = f"HTTP {status_code}"
    try:
        kind = json.loads(answer)["error"]["type"]
    except (ValueError, KeyError, TypeError):
        kind = None
    if isinstance(kind, str) and kind in REFUSALS:
        return f"{REFUSALS[kind]} ({status} {kind})"
    return f"the agent answered {status}"
