"""What a client demands of an enclave before sealing anything to it.

A policy file (YAML or JSON) has the MinerPool attestation policy's keys, exactly as
`teeroute verify --policy` reads them, plus where to find roots beyond the built-in vendor ones:

    allowedTee: [sev-snp, tdx]            # default: hardware TEEs only
    allowedMeasurements: [<hex>, ...]     # default: any (reported as not checked)
    minimumTcb: {<component>: <version>}
    debugForbidden: true                  # the default
    maxEvidenceAge: 5m                    # also bounds how long verified enclaves are cached
    allowedPools: [<namespace>/<name>]    # default: any; else only enclaves bound to these pools
    trust:
      simulatedRoot: sim-root.pem         # the simulated TEE's root CA
      tdxCollateral: pcs/                 # Intel PCS collateral (as `teeroute verify tdx`)

Relative paths are relative to the policy file. The simulated TEE is trusted only when
`allowedTee` lists `simulated` *and* `trust.simulatedRoot` is given; without a policy file only
hardware TEEs are, so a simulated miner is refused unless the user chose otherwise. Every error
names the field it is about.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from teeroute.api.common import parse_duration
from teeroute.attestation.cli import _collateral, _read
from teeroute.attestation.evidence import POOL_PATTERN, Trust
from teeroute.attestation.policy import HARDWARE_TEES, Policy
from teeroute.client.errors import PolicyError
from teeroute.errors import TeerouteError

TEE_TYPES = frozenset({"sev-snp", "tdx", "simulated"})
CACHE_LIMIT = dt.timedelta(minutes=5)
"""Verified enclaves are reused for at most this long (or maxEvidenceAge, if shorter)."""
DEFAULT_SOURCE = "default (hardware TEEs only)"
_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass(frozen=True)
class ClientPolicy:
    policy: Policy = field(default_factory=Policy)
    trust: Trust = field(default_factory=Trust)
    source: str = DEFAULT_SOURCE
    pools: frozenset[str] | None = None
    """`allowedPools`: seal only to enclaves whose evidence binds one of these pools (say, the
    relay pool whose upstream account the user accepts; only releases for its own pool reach
    an enclave); None: any pool."""

    @property
    def cache_ttl(self) -> dt.timedelta:
        if self.policy.max_age is None:
            return CACHE_LIMIT
        return min(self.policy.max_age, CACHE_LIMIT)


def load_policy(path: Path | None) -> ClientPolicy:
    """The policy in `path`, or the default (hardware TEEs only) when there is none."""
    if path is None:
        return ClientPolicy()
    source = str(path)
    try:
        raw = yaml.safe_load(_read(path))
    except yaml.YAMLError as exc:
        raise PolicyError(source, "document", f"not YAML or JSON: {exc}") from exc
    return policy_from_mapping({} if raw is None else raw, source, base=path.parent)


def policy_from_mapping(raw: Any, source: str, base: Path | None = None) -> ClientPolicy:
    if not isinstance(raw, Mapping):
        raise PolicyError(source, "document", "expected a mapping of policy keys")
    body = dict(raw)
    trust = _trust(body.pop("trust", None), source, base or Path())
    pools = _pools(body.pop("allowedPools", None), source)
    _check_fields(body, source)
    try:
        policy = Policy.from_mapping(body)
    except (ValueError, TypeError) as exc:  # unknown keys: the message names them
        raise PolicyError(source, "keys", str(exc)) from exc
    if "simulated" in policy.allowed_tee and trust.simulated_root_pem is None:
        raise PolicyError(
            source,
            "allowedTee",
            "lists simulated, which is trusted only with trust.simulatedRoot "
            "(the simulated TEE's root CA)",
        )
    return ClientPolicy(policy, trust, source, pools)


def _pools(value: Any, source: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise PolicyError(source, "allowedPools", "expected a non-empty list of <namespace>/<name>")
    bad = [v for v in value if not re.fullmatch(POOL_PATTERN, v)]
    if bad:
        raise PolicyError(source, "allowedPools", f"not <namespace>/<name>: {bad[0][:80]!r}")
    return frozenset(value)


def _check_fields(body: Mapping[str, Any], source: str) -> None:
    checks = {
        "allowedTee": _tee_list,
        "allowedMeasurements": _measurements,
        "minimumTcb": _tcb,
        "debugForbidden": _boolean,
        "maxEvidenceAge": _duration,
        "reattestationInterval": _duration,
    }
    for name, check in checks.items():
        if name in body:
            problem = check(body[name])
            if problem:
                raise PolicyError(source, name, problem)


def _tee_list(value: Any) -> str:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        return "expected a non-empty list of TEE types"
    unknown = sorted(set(value) - TEE_TYPES)
    if unknown:
        return f"unknown TEE type {unknown[0]!r} (known: {', '.join(sorted(TEE_TYPES))})"
    return ""


def _measurements(value: Any) -> str:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "expected a list of hex launch measurements"
    bad = [v for v in value if not _HEX.match(v) or len(v) % 2]
    return f"not a hex measurement: {bad[0]!r}" if bad else ""


def _tcb(value: Any) -> str:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and type(v) is int and v >= 0 for k, v in value.items()
    ):
        return "expected a mapping of TCB component names to minimum versions (integers)"
    return ""


def _boolean(value: Any) -> str:
    return "" if isinstance(value, bool) else "expected true or false"


def _duration(value: Any) -> str:
    if not isinstance(value, str):
        return "expected a duration such as 30s, 5m or 1h"
    try:
        parse_duration(value)
    except ValueError as exc:
        return str(exc)
    return ""


def _trust(raw: Any, source: str, base: Path) -> Trust:
    if raw is None:
        return Trust()
    if not isinstance(raw, Mapping):
        raise PolicyError(source, "trust", "expected a mapping (simulatedRoot, tdxCollateral)")
    unknown = sorted(set(raw) - {"simulatedRoot", "tdxCollateral"})
    if unknown:
        raise PolicyError(source, f"trust.{unknown[0]}", "unknown key")
    root = _path(raw, "simulatedRoot", source, base)
    collateral = _path(raw, "tdxCollateral", source, base)
    try:
        root_pem = _read(root) if root else None
    except TeerouteError as exc:
        raise PolicyError(source, "trust.simulatedRoot", str(exc)) from exc
    try:
        tdx_collateral = _collateral(collateral)
    except TeerouteError as exc:
        raise PolicyError(source, "trust.tdxCollateral", str(exc)) from exc
    if root_pem is not None:
        try:
            x509.load_pem_x509_certificates(root_pem)
        except ValueError as exc:
            raise PolicyError(
                source, "trust.simulatedRoot", f"{root} is not a PEM certificate"
            ) from exc
    return Trust(simulated_root_pem=root_pem, tdx_collateral=tdx_collateral)


def _path(raw: Mapping[str, Any], name: str, source: str, base: Path) -> Path | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise PolicyError(source, f"trust.{name}", "expected a path")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def allows(policy: ClientPolicy, tee: str) -> bool:
    """Whether evidence of type `tee` can pass this policy at all."""
    if tee == "simulated" and policy.trust.simulated_root_pem is None:
        return False
    return tee in policy.policy.allowed_tee


__all__ = ["HARDWARE_TEES", "ClientPolicy", "allows", "load_policy", "policy_from_mapping"]
