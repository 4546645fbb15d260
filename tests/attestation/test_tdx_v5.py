"""TDX quote v5 (TDX 1.5), TCB levels and the TDX module, end to end.

No real v5 quote exists in the shared vectors: these quotes re-wrap the REAL v4 TD report (with
TEE_TCB_SVN_2 and MRSERVICETD appended for TDX 1.5) and are signed by tdx_forge's stand-in PKI,
never Intel's keys; `tdx.verify(root=...)` trusts that PKI's root instead of Intel's. What
these tests show is the parsing, what the signature covers and the TCB logic, not that a real
TDX 1.5 platform's quote verifies: that still needs a real v5 vector.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from teeroute.attestation import tdx, tdx_tcb
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.policy import Policy
from teeroute.attestation.verdict import Verdict

from . import tdx_forge as forge

SVN = bytes.fromhex("03000400000000000000000000000000")  # the real TD report's TEE_TCB_SVN
NEWER = bytes.fromhex("03000500000000000000000000000000")
ADMIT_TDX = Policy(allowed_tee=frozenset({"tdx"}))


def verify(quote: bytes, policy: Policy = ADMIT_TDX, **kwargs: Any) -> Verdict:
    kwargs.setdefault("collateral", forge.collateral(forge.up_to_date_tcb_info(seam_svn=4)))
    return tdx.verify(quote, now=forge.NOW, policy=policy, root=forge.pki().root, **kwargs)


@pytest.mark.parametrize(
    ("body", "module"), [(None, "1.0"), (forge.td15_body(bytes(16), b"\x5a" * 48), "1.5")]
)
def test_a_v5_quote_is_parsed_and_verified(body: bytes | None, module: str) -> None:
    quote = forge.quote(5, body)
    parsed = tdx.parse_quote(quote)
    assert parsed.version == 5 and parsed.report.mrtd == forge.REAL.report.mrtd
    assert parsed.report.rtmrs == forge.REAL.report.rtmrs
    verdict = verify(quote)
    assert verdict.ok, verdict.failed
    assert verdict.claims["version"] == 5 and verdict.claims["tdx_module"] == module
    if module == "1.5":
        assert verdict.claims["mrservicetd"] == "5a" * 48


def test_a_v4_quote_from_the_same_pki_verifies_too() -> None:
    assert verify(forge.quote(4)).ok


@pytest.mark.parametrize("offset", [0, 48, 49, 50, 54, 48 + 6 + 136, 48 + 6 + 600, 48 + 6 + 647])
def test_the_signature_covers_header_descriptor_and_the_whole_td15_report(offset: int) -> None:
    quote = bytearray(forge.quote(5, forge.td15_body(NEWER)))
    quote[offset] ^= 0x01
    try:
        verdict = verify(bytes(quote))
    except EvidenceInvalid:
        return  # the header or descriptor no longer parses: refused as well
    assert verdict.status_of("tdx.quote.signature") == "failed"


@pytest.mark.parametrize(
    ("body_type", "body", "message"),
    [
        (2, forge.td15_body(NEWER), "body type 2 of 648"),
        (3, forge.QUOTE[48 : 48 + 584], "body type 3 of 584"),
        (1, forge.QUOTE[48 : 48 + 584], "body type 1"),
    ],
)
def test_a_v5_descriptor_that_does_not_fit_its_body_is_refused(
    body_type: int, body: bytes, message: str
) -> None:
    with pytest.raises(EvidenceInvalid, match=message):
        tdx.parse_quote(forge.quote(5, body, body_type=body_type))


def test_a_descriptor_larger_than_the_quote_is_refused() -> None:
    quote = forge.quote(5, forge.td15_body(NEWER))
    cut = quote[:48] + struct.pack("<HI", 3, 648) + quote[54 : 54 + 600]
    with pytest.raises(EvidenceInvalid):
        tdx.parse_quote(cut + bytes(200))


@pytest.mark.parametrize(
    ("seam_svn", "svn2", "accepted", "status", "ok"),
    [
        (4, None, {"UpToDate"}, "UpToDate", True),
        (5, None, {"UpToDate"}, "OutOfDate", False),
        (5, None, {"OutOfDate"}, "OutOfDate", True),
        # TDX 1.5: launched under an out-of-date module, updated in place since: Intel says
        # relaunch; refused unless the pool accepts that status.
        (5, NEWER, {"UpToDate"}, "TDRelaunchAdvised", False),
        (5, NEWER, {"TDRelaunchAdvised"}, "TDRelaunchAdvised", True),
        (4, NEWER, {"UpToDate"}, "UpToDate", True),
    ],
)
def test_tcb_status_from_intels_levels(
    seam_svn: int, svn2: bytes | None, accepted: set[str], status: str, ok: bool
) -> None:
    body = forge.td15_body(svn2) if svn2 else None
    policy = Policy(allowed_tee=frozenset({"tdx"}), accepted_tcb_statuses=frozenset(accepted))
    col = forge.collateral(forge.up_to_date_tcb_info(seam_svn=seam_svn))
    verdict = verify(forge.quote(5, body), policy=policy, collateral=col)
    check = next(c for c in verdict.checks if c.name == "tdx.tcb.status")
    assert check.detail.startswith(status)
    assert (check.status == "passed") is ok and verdict.ok is ok


def test_a_module_of_a_major_version_intel_does_not_list_is_refused() -> None:
    body = bytearray(forge.QUOTE[48 : 48 + 584])
    body[1] = 1  # TEE_TCB_SVN[1]: TDX module major version 1; this TCB Info lists none
    verdict = verify(forge.quote(5, bytes(body)))
    assert verdict.status_of("tdx.tdx_module") == "failed"
    assert verdict.status_of("tdx.tcb.status") == "failed"


def test_a_module_signed_by_someone_else_is_refused() -> None:
    body = bytearray(forge.QUOTE[48 : 48 + 584])
    body[64:112] = b"\x01" * 48  # MRSIGNERSEAM: not Intel's (all zero in TCB Info)
    verdict = verify(forge.quote(5, bytes(body)))
    check = next(c for c in verdict.checks if c.name == "tdx.tdx_module")
    assert check.status == "failed" and "MRSIGNERSEAM" in check.detail


def test_the_stand_in_root_is_not_trusted_by_default() -> None:
    verdict = tdx.verify(forge.quote(5), now=forge.NOW, policy=ADMIT_TDX)
    assert verdict.status_of("tdx.chain.root_pinned") == "failed"
    assert verdict.status_of("tdx.chain.ca_signed_by_root") == "failed"


@pytest.mark.parametrize(
    ("platform", "component", "result"),
    [
        ("UpToDate", "UpToDate", "UpToDate"),
        ("UpToDate", "OutOfDate", "OutOfDate"),
        ("SWHardeningNeeded", "OutOfDate", "OutOfDate"),
        ("ConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("UpToDate", "Revoked", "Revoked"),
        ("OutOfDate", "UpToDate", "OutOfDate"),
    ],
)
def test_a_modules_status_converges_into_the_platforms(
    platform: str, component: str, result: str
) -> None:
    assert tdx_tcb.converge(platform, component) == result


@pytest.mark.parametrize(
    ("launch", "current", "result"),
    [
        ("OutOfDate", "UpToDate", "TDRelaunchAdvised"),
        ("OutOfDate", "ConfigurationNeeded", "TDRelaunchAdvisedConfigurationNeeded"),
        ("OutOfDateConfigurationNeeded", "UpToDate", "TDRelaunchAdvisedConfigurationNeeded"),
        ("OutOfDate", "OutOfDate", "OutOfDate"),
        ("UpToDate", "UpToDate", "UpToDate"),
        ("Revoked", "UpToDate", "Revoked"),
    ],
)
def test_relaunch_advice_follows_intels_rule(launch: str, current: str, result: str) -> None:
    assert tdx_tcb.relaunch(launch, current) == result
