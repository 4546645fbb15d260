"""Pins on measurement registers beyond the launch measurement, and the TDX policy block.

A TDX guest reports, besides MRTD (the launch measurement `allowedMeasurements` pins), four
run-time measurement registers (RTMR0: firmware configuration, RTMR1: the OS loader and kernel,
RTMR2: the kernel command line and initrd, RTMR3: free for the workload) and two values the
host sets at launch (MRCONFIGID, MROWNER). A policy may pin each to a set of allowed values
(measurements are platform-specific, so sets). A pinned register the evidence does not carry
(SEV-SNP or simulated evidence has no RTMRs) fails its check: asked for, never "not checked".

The policy block, as the MinerPool's `attestation.tdx` and policy files write it:

    tdx:
      rtmr0: [<96 hex>, ...]        # also rtmr1, rtmr2, rtmr3, mrConfigId, mrOwner
      acceptedTcbStatuses: [UpToDate]   # Intel TCB statuses accepted (default: UpToDate only)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, get_args

from teeroute.api.minerpool import TcbStatus
from teeroute.attestation.verdict import Check

REGISTER_KEYS = {
    "rtmr0": "rtmr0",
    "rtmr1": "rtmr1",
    "rtmr2": "rtmr2",
    "rtmr3": "rtmr3",
    "mrConfigId": "mrconfigid",
    "mrOwner": "mrowner",
}
"""Policy key (camelCase) -> register name in claims and check names."""
TCB_STATUSES = frozenset(get_args(TcbStatus)) | {"Revoked"}
"""Every status Intel's TCB Info, TDX module and QE Identity levels use."""
_HEX48 = re.compile(r"^[0-9a-fA-F]{96}$")


def check_name(register: str) -> str:
    return f"policy.register.{register}"


def from_tdx_mapping(raw: Any) -> tuple[dict[str, frozenset[str]] | None, frozenset[str]]:
    """(register pins or None, accepted TCB statuses) from a policy's `tdx` block; ValueError
    naming the key otherwise (unknown keys too, so a typo cannot drop a pin)."""
    if not isinstance(raw, Mapping):
        raise ValueError("tdx: expected a mapping")
    unknown = set(raw) - set(REGISTER_KEYS) - {"acceptedTcbStatuses"}
    if unknown:
        raise ValueError(f"unknown tdx policy keys: {', '.join(sorted(unknown))}")
    pins = {
        REGISTER_KEYS[key]: _values(key, values)
        for key, values in raw.items()
        if key in REGISTER_KEYS and values
    }
    return pins or None, _statuses(raw.get("acceptedTcbStatuses") or ["UpToDate"])


def _values(key: str, values: Any) -> frozenset[str]:
    if not isinstance(values, list) or not all(
        isinstance(v, str) and _HEX48.match(v) for v in values
    ):
        raise ValueError(f"tdx.{key}: expected a list of 48-byte values in hex (96 digits)")
    return frozenset(v.lower() for v in values)


def _statuses(values: Any) -> frozenset[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("tdx.acceptedTcbStatuses: expected a list of Intel TCB statuses")
    unknown = sorted(set(values) - TCB_STATUSES)
    if unknown:
        raise ValueError(f"tdx.acceptedTcbStatuses: unknown status {unknown[0]!r}")
    return frozenset(values)


def checks(
    pins: Mapping[str, Iterable[str]] | None, tee: str, seen: Mapping[str, bytes]
) -> list[Check]:
    """One check per pinned register: passed when the evidence's value is allowed."""
    return [_one(reg, frozenset(allowed), tee, seen) for reg, allowed in (pins or {}).items()]


def _one(register: str, allowed: frozenset[str], tee: str, seen: Mapping[str, bytes]) -> Check:
    name = check_name(register)
    value = seen.get(register)
    if value is None:
        return Check(name, "failed", f"pinned, but {tee} evidence has no {register}")
    return Check.of(name, value.hex() in allowed, f"seen {value.hex()}")
