"""Sealing errors. Each names the check that failed and never carries content or key bytes.

TeerouteError
└── SealingError               check + a short detail
    ├── EnvelopeInvalid        a sealed request, frame or receipt cannot be read
    ├── OpenFailed             authentication failed: wrong key, or altered, reordered,
    │                          dropped or replayed bytes
    ├── ReceiptInvalid         a receipt that fails verification
    ├── FrameInvalid           bytes that are not a wire v2 frame (magic, version, type,
    │                          size, truncated, trailing)
    └── ReleaseInvalid         a secret release not signed by the pinned release key, or not
                               for this enclave
"""

from teeroute.errors import TeerouteError


class SealingError(TeerouteError):
    exit_code = 4

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


class EnvelopeInvalid(SealingError):
    pass


class OpenFailed(SealingError):
    pass


class ReceiptInvalid(SealingError):
    pass


class ReleaseInvalid(SealingError):
    pass


class FrameInvalid(SealingError):
    pass
