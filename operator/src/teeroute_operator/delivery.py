"""The I/O of secret release: read a pool's Secrets (once per sweep; nothing is kept longer),
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
from collections.abc import Mapping, Sequence

import httpx

from teeroute.api.minerpool import PoolSecret
from teeroute.kube import ApiError, Kube, paths
from teeroute.sealing.envelope import SEALED_CONTENT_TYPE
from teeroute.sealing.errors import SealingError
from teeroute.sealing.secrets import PATH, Signer, seal_secrets
from teeroute_operator.release import Loaded, NoSecrets, SecretSet, SecretVersion, Unavailable

RELEASED = 204
REFUSALS = {
    "secret_release_disabled": "the agent pins no release key",
    "release_refused": "the agent refused the release's signature",
    "release_stale": "the agent holds a newer release",
}
"""The agent's refusals of a release (its error `type`), and what they mean."""


async def load(kube: Kube, namespace: str, wanted: Sequence[PoolSecret]) -> SecretSet:
    """The pool's secrets: each Secret is read once (`get`); a missing Secret or key, or one
    the operator may not read, makes the whole set unavailable. Other apiserver errors raise
    (the sweep is retried, the leases carry the endpoints meanwhile)."""
    if not wanted:
        return NoSecrets()
    read: dict[str, dict[str, object]] = {}
    values: dict[str, str] = {}
    versions = []
    for entry in wanted:
        ref = entry.secret_key_ref
        if ref.name not in read:
            try:
                read[ref.name] = await kube.get(
                    f"{paths.collection('v1', 'Secret', namespace)}/{ref.name}"
                )
            except ApiError as exc:
                if exc.status in (403, 404):
                    what = "not found" if exc.not_found else f"not readable (HTTP {exc.status})"
                    return Unavailable(f'Secret "{ref.name}" {what} (secret {entry.name})')
                raise
        secret = read[ref.name]
        data = secret.get("data") or {}
        if not isinstance(data, dict) or ref.key not in data:
            return Unavailable(f'Secret "{ref.name}" has no key "{ref.key}" (secret {entry.name})')
        try:
            values[entry.name] = base64.b64decode(str(data[ref.key]), validate=True).decode()
        except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
            return Unavailable(
                f'key "{ref.key}" of Secret "{ref.name}" is not UTF-8 text (secret {entry.name})'
            )
        meta = secret.get("metadata") or {}
        version = str(meta.get("resourceVersion", "")) if isinstance(meta, dict) else ""
        versions.append(SecretVersion(entry.name, ref.name, ref.key, version))
    return Loaded(tuple(versions), values)


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
        response = await client.post(
            agent_url.rstrip("/") + PATH,
            content=body,
            headers={"Content-Type": SEALED_CONTENT_TYPE},
        )
    except httpx.TimeoutException:
        return "the agent timed out"
    except httpx.HTTPError as exc:
        return f"the agent could not be reached ({type(exc).__name__})"
    if response.status_code != RELEASED:
        return _refusal(response)
    return None


def _refusal(response: httpx.Response) -> str:
    status = f"HTTP {response.status_code}"
    try:
        kind = response.json()["error"]["type"]
    except (ValueError, KeyError, TypeError):
        kind = None
    if isinstance(kind, str) and kind in REFUSALS:
        return f"{REFUSALS[kind]} ({status} {kind})"
    return f"the agent answered {status}"
