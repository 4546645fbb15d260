"""Attestation-gated secret release: does this enclave need the pool's secrets, and under
which fingerprint (pure)?

The pool's secrets go to an enclave once per HPKE key and version of the secret set: the
fingerprint is SHA-256 over the enclave's HPKE key fingerprint and, for each secret in name
order, its name, its Secret and key, and that Secret's resourceVersion. The sweeper remembers
the fingerprint it last delivered (in memory and on the pod, or in the external endpoint's
status entry), so a restarted enclave (new key) or a changed Secret (new resourceVersion)
gets them again, and nothing else does.

Values travel only in `Loaded.values`, which never prints (repr) and never compares.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SecretVersion:
    name: str
    """The name the enclave knows the secret by (spec.secrets[].name)."""
    secret: str
    """The Secret it comes from."""
    key: str
    """The key in that Secret's data."""
    resource_version: str
    """The Secret's resourceVersion when it was read."""


@dataclass(frozen=True)
class NoSecrets:
    """The pool releases nothing."""


@dataclass(frozen=True)
class Loaded:
    """The pool's secrets as read in this sweep (values for this sweep only)."""

    versions: tuple[SecretVersion, ...]
    values: Mapping[str, str] = field(repr=False, compare=False, default_factory=dict)

    @property
    def names(self) -> list[str]:
        return sorted(v.name for v in self.versions)


@dataclass(frozen=True)
class Unavailable:
    """The secrets cannot be read (a Secret or key missing, access refused)."""

    reason: str


SecretSet = NoSecrets | Loaded | Unavailable


@dataclass(frozen=True)
class Keep:
    """Nothing to send: the enclave has this set already (or there is none: "")."""

    fingerprint: str


@dataclass(frozen=True)
class Send:
    """Seal `secrets` to the enclave; on success it has `fingerprint`."""

    fingerprint: str
    secrets: Loaded


@dataclass(frozen=True)
class Fail:
    """The enclave cannot get its secrets now (so it is not admitted)."""

    reason: str


Decision = Keep | Send | Fail


def fingerprint(hpke_key_sha256: str, versions: Collection[SecretVersion]) -> str:
    lines = [hpke_key_sha256]
    for v in sorted(versions, key=lambda v: v.name):
        lines.append(f"{v.name}\x00{v.secret}\x00{v.key}\x00{v.resource_version}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def decide(hpke_key_sha256: str, secrets: SecretSet, released: Collection[str]) -> Decision:
    """For an enclave whose evidence just verified (HPKE key `hpke_key_sha256`), given the
    fingerprints it is known to have received (`released`: the operator's memory and the
    recorded one; empty strings are ignored)."""
    if isinstance(secrets, NoSecrets):
        return Keep("")
    if isinstance(secrets, Unavailable):
        return Fail(secrets.reason)
    wanted = fingerprint(hpke_key_sha256, secrets.versions)
    return Keep(wanted) if wanted in released else Send(wanted, secrets)
