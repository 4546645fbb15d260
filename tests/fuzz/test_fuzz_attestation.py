"""Fuzzing every evidence parser and verifier: SEV-SNP, TDX (quote and Intel collateral),
NVIDIA, the simulated TEE, DER, certificates and the evidence document.

Property: any input ends in a result or the module's typed error (AttestationError; DER's
ValueError), never IndexError, struct.error, KeyError, TypeError, RecursionError; and a
mutated signed input never verifies unless what was signed is unchanged."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from teeroute.attestation import der, evidence, nvidia, simulated, snp, tdx, x509chain
from teeroute.attestation.errors import AttestationError, EvidenceInvalid
from teeroute.attestation.tdx_collateral import parse_qe_identity, parse_tcb_info
from teeroute.attestation.tdx_quote import TdxQuote
from teeroute.attestation.verdict import Verdict

from . import budget
from . import evidence_inputs as ev
from .json_values import VALUES, changed
from .mutate import inputs, mutated, typed

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(budget.TIMEOUT_S)]


def _tbs(data: bytes, pem: bool = True) -> list[bytes]:
    """What the issuers signed of each certificate in `data` (loaded as the verifiers do)."""
    if pem:
        return [c.tbs_certificate_bytes for c in x509chain.load_pem_chain(data, "fuzz")]
    return [x509chain.load_der(data, "fuzz").tbs_certificate_bytes]


# -- AMD SEV-SNP ---------------------------------------------------------------------------

SNP_SIGNED = snp.parse_report(ev.SNP_REPORT)


@budget.budget()
@given(inputs(ev.SNP_REPORT) | st.binary(min_size=snp.REPORT_SIZE, max_size=snp.REPORT_SIZE))
def test_snp_report_parser_raises_only_evidence_invalid(data: bytes) -> None:
    typed(lambda: snp.parse_report(data), EvidenceInvalid)


@budget.budget()
@given(mutated(ev.SNP_REPORT))
def test_a_mutated_snp_report_verifies_only_if_its_signed_bytes_are_unchanged(data: bytes) -> None:
    verdict = typed(lambda: snp.verify(data, ev.SNP_VCEK, now=ev.SNP_NOW), AttestationError)
    if isinstance(verdict, Verdict) and verdict.ok:
        report = snp.parse_report(data)
        assert (report.signed, report.signature_r, report.signature_s) == (
            SNP_SIGNED.signed,
            SNP_SIGNED.signature_r,
            SNP_SIGNED.signature_s,
        )


@budget.budget()
@given(mutated(ev.SNP_VCEK), st.booleans())
def test_a_mutated_vcek_is_refused_or_certifies_the_same_key(cert: bytes, chain: bool) -> None:
    verdict = typed(
        lambda: snp.verify(
            ev.SNP_REPORT, cert, now=ev.SNP_NOW, chain_pem=ev.SNP_CHAIN if chain else None
        ),
        AttestationError,
    )
    if isinstance(verdict, Verdict) and verdict.ok:
        assert _tbs(cert, pem=False) == _tbs(ev.SNP_VCEK, pem=False)


@budget.budget()
@given(mutated(ev.SNP_CHAIN))
def test_a_mutated_amd_chain_raises_only_typed_errors(chain: bytes) -> None:
    typed(
        lambda: snp.verify(ev.SNP_REPORT, ev.SNP_VCEK, now=ev.SNP_NOW, chain_pem=chain),
        AttestationError,
    )


# -- Intel TDX -----------------------------------------------------------------------------

TDX_ORIGINAL = tdx.parse_quote(ev.TDX_QUOTE)


def _signed_parts(quote: TdxQuote) -> tuple[Any, ...]:
    return (
        quote.signed,
        quote.signature,
        quote.attestation_key,
        quote.qe_report.raw,
        quote.qe_report_signature,
        quote.qe_auth_data,
        _tbs(quote.pck_chain_pem),
    )


@budget.budget()
@given(inputs(ev.TDX_QUOTE, max_random=1500))
def test_tdx_quote_parser_raises_only_evidence_invalid(data: bytes) -> None:
    typed(lambda: tdx.parse_quote(data), EvidenceInvalid)


@budget.budget()
@given(mutated(ev.TDX_QUOTE))
def test_a_mutated_tdx_quote_is_authentic_only_if_its_signed_parts_are_unchanged(
    data: bytes,
) -> None:
    verdict = typed(
        lambda: tdx.verify(data, now=ev.TDX_NOW, collateral=ev.TDX_COLLATERAL), AttestationError
    )
    if isinstance(verdict, Verdict) and all(
        verdict.status_of(name) == "passed" for name in ev.TDX_CRYPTO
    ):
        assert _signed_parts(tdx.parse_quote(data)) == _signed_parts(TDX_ORIGINAL)


COLLATERAL_PARTS = {
    "tcb_info": ev.TCB_INFO,
    "qe_identity": ev.QE_IDENTITY,
    "root_crl": ev.ROOT_CRL,
    "pck_crl": ev.PCK_CRL,
    "signing_chain": ev.TCB_SIGNING_CHAIN,
}


@st.composite
def _collateral_files(draw: st.DrawFn) -> dict[str, bytes]:
    name = draw(st.sampled_from(sorted(COLLATERAL_PARTS)))
    return {**COLLATERAL_PARTS, name: draw(mutated(COLLATERAL_PARTS[name]))}


@budget.budget()
@given(_collateral_files())
def test_mutated_collateral_is_refused_or_its_signature_covers_the_same_bytes(
    files: dict[str, bytes],
) -> None:
    collateral = typed(lambda: tdx.Collateral.from_files(**files), EvidenceInvalid)
    if not isinstance(collateral, tdx.Collateral):
        return
    verdict = tdx.verify(ev.TDX_QUOTE, now=ev.TDX_NOW, collateral=collateral)
    original = ev.TDX_COLLATERAL
    if verdict.status_of("tdx.collateral.tcb_info_signature") == "passed":
        assert collateral.tcb_info and original.tcb_info
        assert collateral.tcb_info.signed == original.tcb_info.signed
    if verdict.status_of("tdx.collateral.qe_identity_signature") == "passed":
        assert collateral.qe_identity and original.qe_identity
        assert collateral.qe_identity.signed == original.qe_identity.signed


_TCB_DOC = json.loads(ev.TCB_INFO)
_QE_DOC = json.loads(ev.QE_IDENTITY)


@budget.budget(budget.SHAPES)
@given(st.one_of(changed(_TCB_DOC), changed(_QE_DOC), VALUES))
def test_collateral_json_of_any_shape_raises_only_evidence_invalid(doc: Any) -> None:
    raw = json.dumps(doc).encode()
    typed(lambda: parse_tcb_info(raw), EvidenceInvalid)
    typed(lambda: parse_qe_identity(raw), EvidenceInvalid)


# -- NVIDIA --------------------------------------------------------------------------------

GPU_ORIGINAL = nvidia.parse_report(ev.GPU_REPORT)


@budget.budget()
@given(inputs(ev.GPU_REPORT))
def test_nvidia_report_parser_raises_only_evidence_invalid(data: bytes) -> None:
    typed(lambda: nvidia.parse_report(data), EvidenceInvalid)


@budget.budget()
@given(mutated(ev.GPU_REPORT))
def test_a_mutated_gpu_report_verifies_only_if_unchanged(data: bytes) -> None:
    verdict = typed(
        lambda: nvidia.verify(data, ev.GPU_CHAIN, now=ev.GPU_NOW, nonce=ev.GPU_NONCE),
        AttestationError,
    )
    if isinstance(verdict, Verdict) and verdict.ok:
        report = nvidia.parse_report(data)
        assert (report.signed, report.signature) == (GPU_ORIGINAL.signed, GPU_ORIGINAL.signature)


@budget.budget()
@given(mutated(ev.GPU_CHAIN))
def test_a_mutated_gpu_chain_is_refused_or_holds_the_same_certificates(chain: bytes) -> None:
    verdict = typed(
        lambda: nvidia.verify(ev.GPU_REPORT, chain, now=ev.GPU_NOW, nonce=ev.GPU_NONCE),
        AttestationError,
    )
    if isinstance(verdict, Verdict) and verdict.ok:
        assert _tbs(chain)[0] == _tbs(ev.GPU_CHAIN)[0]


# -- the simulated TEE ---------------------------------------------------------------------

SIM_ORIGINAL = simulated.parse_report(ev.SIM_REPORT)


@budget.budget()
@given(
    inputs(ev.SIM_REPORT)
    | st.binary(min_size=simulated.REPORT_SIZE, max_size=simulated.REPORT_SIZE).map(
        lambda b: simulated.MAGIC + b[8:]
    )
)
def test_a_mutated_simulated_report_verifies_only_if_unchanged(data: bytes) -> None:
    verdict = typed(
        lambda: simulated.verify(
            data,
            ev.SIM_CHIP_PEM,
            ev.SIM_ROOT_PEM,
            now=ev.SIM_NOW,
            policy=ev.SIM_POLICY,
            challenge=ev.SIM_CHALLENGE,
        ),
        AttestationError,
    )
    if isinstance(verdict, Verdict) and verdict.ok:
        report = simulated.parse_report(data)
        assert (report.signed, report.signature) == (SIM_ORIGINAL.signed, SIM_ORIGINAL.signature)


# -- DER and certificates ------------------------------------------------------------------

_PCK = x509.load_pem_x509_certificates(TDX_ORIGINAL.pck_chain_pem)[0]
SGX_EXTENSION = _PCK.extensions.get_extension_for_oid(x509.ObjectIdentifier(tdx.SGX_EXT)).value
assert isinstance(SGX_EXTENSION, x509.UnrecognizedExtension)


@budget.budget()
@given(inputs(SGX_EXTENSION.value))
def test_der_reader_raises_only_value_error(data: bytes) -> None:
    def read() -> object:
        top = der.oid_map(der.one(data, der.SEQUENCE))
        return [der.oid_map(content) for tag, content in top.values() if tag == der.SEQUENCE]

    typed(read, ValueError)


@budget.budget()
@given(inputs(ev.SNP_VCEK), inputs(ev.GPU_CHAIN))
def test_certificate_loaders_raise_only_evidence_invalid(der_cert: bytes, pem: bytes) -> None:
    typed(lambda: x509chain.load_der(der_cert, "fuzz"), EvidenceInvalid)
    typed(lambda: x509chain.load_pem_chain(pem, "fuzz"), EvidenceInvalid)


# -- the evidence document -----------------------------------------------------------------

SIM_DOC = ev.sim_document()
TRUST = evidence.Trust(simulated_root_pem=ev.SIM_ROOT_PEM)


def _b64_mutated() -> st.SearchStrategy[dict[str, Any]]:
    """The document with its evidence bytes mutated (base64 of a mutated report)."""
    return mutated(ev.SIM_REPORT).map(
        lambda raw: {**SIM_DOC, "evidence": base64.b64encode(raw).decode()}
    )


@budget.budget(budget.SHAPES)
@given(st.one_of(changed(SIM_DOC), _b64_mutated(), VALUES))
def test_an_evidence_document_of_any_shape_raises_only_attestation_errors(raw: Any) -> None:
    doc = typed(lambda: evidence.EvidenceDocument.parse(raw), EvidenceInvalid)
    if not isinstance(doc, evidence.EvidenceDocument):
        return
    verdict = typed(
        lambda: evidence.verify_document(
            doc, now=ev.SIM_NOW, policy=ev.SIM_POLICY, trust=TRUST, issued_at=ev.SIM_NOW
        ),
        AttestationError,
    )
    if isinstance(verdict, Verdict) and verdict.ok:
        assert base64.b64decode(doc.evidence)[: simulated.REPORT_SIZE] == ev.SIM_REPORT
