"""Coverage-guided fuzzing of teeroute's parsers of peer bytes with atheris (libFuzzer), by
hand: the CI suite is the Hypothesis properties beside this file (tests/fuzz/README.md).

    python3 -m uv run --frozen python tests/fuzz/atheris_parsers.py -runs=200000
    python3 -m uv run --frozen python tests/fuzz/atheris_parsers.py --write-seeds corpus/
    python3 -m uv run --frozen python tests/fuzz/atheris_parsers.py -max_len=8192 \
        -max_total_time=600 corpus/

The first input byte picks the parser, the rest is its input. `--write-seeds DIR` writes the
valid inputs the Hypothesis suite mutates (the real SNP, TDX and NVIDIA vectors, frames,
HELLO, receipts, roots, a proof bundle, ...) as a starting corpus. A parser may return or raise
its typed error; anything else (IndexError, struct.error, KeyError, RecursionError, ...)
is a finding: libFuzzer stops, prints the traceback and writes the input as crash-<sha1>.
atheris has wheels for CPython 3.11 on Linux x86-64 only (pyproject.toml).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["teeroute"]):  # not its dependencies
    from teeroute import admission_record
    from teeroute.attestation import der, nvidia, simulated, snp, tdx_collateral, tdx_quote
    from teeroute.attestation.errors import AttestationError
    from teeroute.errors import TeerouteError
    from teeroute.sealing import envelope, gateway_auth, params, receipt_mac, roots
    from teeroute.sealing.frames import FrameDecoder, decode_one
    from teeroute.wire import EventSplitter, WireError


def _decoder(data: bytes) -> None:
    decoder = FrameDecoder(256)
    for at in range(0, len(data), 7):
        decoder.feed(data[at : at + 7])


def _events(data: bytes) -> None:
    splitter = EventSplitter(64, crlf=True)
    for at in range(0, len(data), 5):
        splitter.feed(data[at : at + 5])


def _der(data: bytes) -> None:
    for tag, content in der.items(data):
        if tag == der.SEQUENCE:
            der.oid_map(content)


def _text(parse: Callable[[str], object]) -> Callable[[bytes], object]:
    return lambda data: parse(data.decode("utf-8", "replace"))


TARGETS: tuple[Callable[[bytes], object], ...] = (
    snp.parse_report,
    tdx_quote.parse_quote,
    nvidia.parse_report,
    simulated.parse_report,
    tdx_collateral.parse_tcb_info,
    tdx_collateral.parse_qe_identity,
    _der,
    decode_one,
    _decoder,
    params.parse_hello,
    params.SessionParams.from_transcript,
    receipt_mac.parse_receipt,
    roots.parse_root,
    lambda data: roots.verify_bundle(data, None),
    envelope.SealedRequest.parse,
    _text(gateway_auth.parse),
    _text(admission_record.load_list),
    _events,
)
TYPED = (TeerouteError, AttestationError, ValueError, gateway_auth.Refused, WireError)
"""The typed errors: each module's own, and der's documented ValueError."""


def one_input(data: bytes) -> None:
    if not data:
        return
    target = TARGETS[data[0] % len(TARGETS)]
    try:
        target(data[1:])
    except TYPED as exc:
        if type(exc) in (ValueError, KeyError) and target is not _der:
            raise  # a bare ValueError escaped a parser that promises its own typed error


def write_seeds(directory: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parents[2]))  # the repository root: tests.fuzz
    from tests.fuzz import evidence_inputs as ev
    from tests.fuzz import sealing_inputs as s

    seeds = {
        snp.parse_report: ev.SNP_REPORT,
        tdx_quote.parse_quote: ev.TDX_QUOTE,
        nvidia.parse_report: ev.GPU_REPORT,
        simulated.parse_report: ev.SIM_REPORT,
        tdx_collateral.parse_tcb_info: ev.TCB_INFO,
        tdx_collateral.parse_qe_identity: ev.QE_IDENTITY,
        decode_one: s.STREAM[: 8 + int.from_bytes(s.STREAM[4:8], "big")],
        _decoder: s.STREAM,
        params.parse_hello: s.HELLO,
        params.SessionParams.from_transcript: s.TRANSCRIPT,
        receipt_mac.parse_receipt: s.RECEIPTS[0],
        roots.parse_root: s.ROOT,
        TARGETS[13]: s.BUNDLE,
        envelope.SealedRequest.parse: envelope.seal_request(s.ENCLAVE_PUBLIC, {}, b"")[
            0
        ].to_bytes(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for target, seed in seeds.items():
        data = bytes([TARGETS.index(target)]) + seed
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)  # noqa: S324 (names)


def main() -> None:
    if sys.argv[1:2] == ["--write-seeds"]:
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
