"""Attestation errors.

    TeerouteError
    └── AttestationError
        ├── EvidenceInvalid          the evidence cannot be read (names the check)
        ├── CollateralUnavailable    a certificate or collateral needed to verify is missing
        └── UnsupportedEvidence      a TEE type or version this verifier does not handle

A policy violation is not an exception: it is a failed check in the Verdict, beside the
others, so every violation is reported, not just the first.
"""

from teeroute.errors import TeerouteError


class AttestationError(TeerouteError):
    exit_code = 3

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


class EvidenceInvalid(AttestationError):
    pass


class CollateralUnavailable(AttestationError):
    pass


class UnsupportedEvidence(AttestationError):
    pass
