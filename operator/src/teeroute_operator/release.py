"""Attestation-gated secret release: does this enclave need the pool's secrets, and under
which fingerprint (pure)?

The pool's secrets go to an enclave once per HPKE key and version of the secret set: the
fingerprint is SHA-256 over the enclave's HPKE key fingerprint and, for each secret in name
order, its name, its Secret and key, and that Secret's resourceVersion. The sweeper remembers
the fingerprint it last delivered (in memory and on the pod, or in the external endpoint's
status entry), so a restarted enclave (new key) or a changed Secret (new resourceVersion)
gets them again, and nothing else does.

Only an enclave that pins the operator's release key gets them (its evidence vouches for the
key it pins; the agent accepts releases signed by that key alone): an enclave pinning another
key, or none, would refuse the release, or take one from whoever holds that other key, so it is
failed before anything is sent, and so is every enclave when the operator has no release key.

Two consents come before any Secret is read or released, each a named check:
- `secrets.measurementsPinned`: the pool pins the enclave's code (`attestation.
  allowedMeasurements`); without it any enclave, including one built to print what it is
  given, would verify, so nothing is read.
- `secrets.optIn`: the Secret names the pool in its `teeroute.dev/release-to` annotation
  (pool names of its namespace, comma-separated): whoever can write a MinerPool cannot make
  the operator hand out a Secret its owner did not offer to that pool.
A Secret the operator may not read (its RBAC grant, see docs/sealed-mode.md section 4) fails
`secrets.readable`; one missing, or missing the key, `secrets.found`.

Values travel only in `Loaded.values`, which never prints (repr) and never compares.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from teeroute.sealing.secrets import Signer
from teeroute_operator.release_key import SETTING


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
    """Seal `secrets` to the enclave, signed by `signer`; on success it has `fingerprint`."""

    fingerprint: str
    secrets: Loaded
    signer: Signer


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


RELEASE_TO = "teeroute.dev/release-to"
"""Annotation on a Secret: the pools of its namespace it may be released to (comma-separated
names; no wildcard)."""
PINNED_CHECK = "secrets.measurementsPinned"
OPT_IN_CHECK = "secrets.optIn"
READABLE_CHECK = "secrets.readable"
FOUND_CHECK = "secrets.found"


def pinning_problem(allowed_measurements: Sequence[str]) -> str | None:
    """Why a pool allowing these measurements may not be given secrets; None when it may."""
    if allowed_measurements:
        return None
    return (
        f"{PINNED_CHECK}: the pool pins no measurement (attestation.allowedMeasurements is "
        "empty), so an enclave running any code would get its secrets; nothing was read"
    )


def opted_in_pools(annotations: Mapping[str, str] | None) -> frozenset[str]:
    """The pools a Secret with these annotations may be released to."""
    value = (annotations or {}).get(RELEASE_TO, "")
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def opt_in_problem(secret: str, annotations: Mapping[str, str] | None, pool: str) -> str | None:
    """Why Secret `secret` (with these annotations) may not go to pool `pool`; None: it may."""
    if pool in opted_in_pools(annotations):
        return None
    return (
        f'{OPT_IN_CHECK}: Secret "{secret}" does not name pool "{pool}" in its '
        f"{RELEASE_TO} annotation"
    )


NO_RELEASE_KEY = f"the operator has no release key ({SETTING} is unset)"


def pin_problem(release_key: bytes, pinned: bytes) -> str | None:
    """Why an enclave pinning `pinned` (empty: none) cannot be given secrets signed with the
    operator's `release_key`; None when it can."""
    if not pinned:
        return "the enclave pins no release key (its agent lacks TEEROUTE_AGENT_RELEASE_KEY)"
    if pinned != release_key:
        return (
            f"the enclave pins another release key (SHA-256 {_short(pinned)}…, "
            f"not the operator's {_short(release_key)}…)"
        )
    return None


def _short(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def decide(
    hpke_key_sha256: str,
    secrets: SecretSet,
    released: Collection[str],
    *,
    signer: Signer | None,
    pinned: bytes,
) -> Decision:
    """For an enclave whose evidence just verified (HPKE key `hpke_key_sha256`, pinning the
    release key `pinned`), given the fingerprints it is known to have received (`released`:
    the operator's memory and the recorded one; empty strings are ignored) and the operator's
    release key (`signer`; None: it has none)."""
    if isinstance(secrets, NoSecrets):
        return Keep("")
    if signer is None:
        return Fail(NO_RELEASE_KEY)
    problem = pin_problem(signer.public, pinned)
    if problem is not None:
        return Fail(problem)
    if isinstance(secrets, Unavailable):
        return Fail(secrets.reason)
    wanted = fingerprint(hpke_key_sha256, secrets.versions)
    return Keep(wanted) if wanted in released else Send(wanted, secrets, signer)
