"""What the fuzzers found, each as a plain test of the smallest input that showed it.

Each raised an untyped exception from a parser of peer bytes before its fix: JSON nested past
Python's recursion limit (RecursionError, a few kilobytes from any peer), and certificates or
CRLs whose names, extensions, version or key cryptography reads only on first use (ValueError,
KeyError, InvalidVersion, DuplicateExtension, UnsupportedAlgorithm inside a check, long after
loading)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding

from teeroute import admission_record
from teeroute.attestation import nvidia, snp, tdx, x509chain
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.tdx_collateral import parse_tcb_info
from teeroute.errors import TeerouteError
from teeroute.sealing import envelope, hpke, secrets
from teeroute.sealing.params import SessionParams
from teeroute.sealing.receipt_body import parse_body
from teeroute.sealing.roots import parse_root, verify_bundle

from . import evidence_inputs as ev

DEEP = b"[" * 1500 + b"]" * 1500
"""1.5 kB of JSON that Python's json module cannot read without RecursionError."""


def _record_verify() -> object:
    """A record the operator's key did sign, whose body is DEEP."""
    key = ed25519.Ed25519PrivateKey.generate()
    signature = key.sign(admission_record.SIGNATURE_CONTEXT + DEEP)
    token = ".".join(base64.urlsafe_b64encode(p).rstrip(b"=").decode() for p in (DEEP, signature))
    return admission_record.verify(token, key.public_key().public_bytes_raw(), pool="ns/pool")


def _open_release(document: bytes) -> object:
    """A release anyone can seal to an enclave's key: its plaintext is read before the
    signature over it is checked."""
    private, public = hpke.generate_key_pair()
    sealed, _ = envelope.seal_request(public, {"path": secrets.PATH}, document)
    return secrets.open_secrets(sealed.to_bytes(), private, public, bytes(32), pool="ns/pool")


DEEP_JSON_CASES: dict[str, Callable[[], object]] = {
    "session transcript": lambda: SessionParams.from_transcript(DEEP),
    "receipt body": lambda: parse_body(DEEP),
    "root document": lambda: parse_root(
        len(DEEP[:1000]).to_bytes(2, "big") + DEEP[:1000] + bytes(64)
    ),
    "proof bundle": lambda: verify_bundle(DEEP, None),
    "v1 sealed request": lambda: envelope.SealedRequest.parse(DEEP),
    "admission record": _record_verify,
    "TCB Info": lambda: parse_tcb_info(b'{"tcbInfo":' + DEEP + b',"signature":""}'),
    "secret release": lambda: _open_release(DEEP),
}


@pytest.mark.parametrize("parse", DEEP_JSON_CASES.values(), ids=DEEP_JSON_CASES.keys())
def test_deeply_nested_json_is_a_typed_refusal_not_a_recursion_error(
    parse: Callable[[], object],
) -> None:
    with pytest.raises(TeerouteError):
        parse()


def test_a_deeply_nested_records_annotation_reads_as_no_records() -> None:
    assert admission_record.load_list(DEEP.decode()) == []


# -- certificates read lazily ----------------------------------------------------------------


def _replace_once(data: bytes, old: bytes, new: bytes, occurrence: int = 0) -> bytes:
    at = -1
    for _ in range(occurrence + 1):
        at = data.index(old, at + 1)
    return data[:at] + new + data[at + len(old) :]


def test_a_vcek_whose_subject_cannot_be_read_is_evidence_invalid() -> None:
    # the subject's O value as ASN.1 tag 13 (no string type): cryptography raised KeyError: 13
    organization = b"\x06\x03U\x04\n\x0c\x16Advanced Micro Devices"
    vcek = _replace_once(ev.SNP_VCEK, organization, organization.replace(b"\x0c", b"\x0d"), 1)
    with pytest.raises(EvidenceInvalid):
        snp.verify(ev.SNP_REPORT, vcek, now=ev.SNP_NOW)


def test_a_vcek_of_an_unknown_x509_version_is_evidence_invalid() -> None:
    vcek = _replace_once(ev.SNP_VCEK, b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03")
    with pytest.raises(EvidenceInvalid):  # was cryptography's InvalidVersion
        snp.verify(ev.SNP_REPORT, vcek, now=ev.SNP_NOW)


def test_a_certificate_with_an_extension_twice_is_evidence_invalid() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "twice")])
    first, second = x509.ObjectIdentifier("1.2.3.4.1"), x509.ObjectIdentifier("1.2.3.4.2")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(ev.SNP_NOW)
        .not_valid_after(ev.SNP_NOW + dt.timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(first, b"\x05\x00"), critical=False)
        .add_extension(x509.UnrecognizedExtension(second, b"\x05\x00"), critical=False)
        .sign(key, hashes.SHA384())
    )
    encoded = bytes.fromhex("06042a0304")  # OID 1.2.3.4.(the last byte follows)
    twice = _replace_once(cert.public_bytes(Encoding.DER), encoded + b"\x02", encoded + b"\x01")
    with pytest.raises(EvidenceInvalid):  # was cryptography's DuplicateExtension
        snp.verify(ev.SNP_REPORT, twice, now=ev.SNP_NOW)


def _pem(cert: bytes) -> bytes:
    return x509.load_der_x509_certificate(cert).public_bytes(Encoding.PEM)


def test_a_gpu_leaf_with_an_unreadable_extension_is_evidence_invalid() -> None:
    leaf, *rest = x509.load_pem_x509_certificates(ev.GPU_CHAIN)
    raw = leaf.public_bytes(Encoding.DER)
    oid = bytes.fromhex("060a2b06010401831c821201")  # the SAN OtherName's type id
    broken = _replace_once(raw, oid, oid[:-1] + b"\x81")  # an OID that never ends
    chain = _pem(broken) + b"".join(c.public_bytes(Encoding.PEM) for c in rest)
    with pytest.raises(EvidenceInvalid):  # was ValueError from inside the FWID check
        nvidia.verify(ev.GPU_REPORT, chain, now=ev.GPU_NOW, nonce=ev.GPU_NONCE)


def test_a_pck_key_on_an_unknown_curve_fails_the_signature_check() -> None:
    pem_start = ev.TDX_QUOTE.index(b"-----BEGIN")
    pck = x509.load_pem_x509_certificates(ev.TDX_QUOTE[pem_start:])[0]
    prime256v1 = bytes.fromhex("06082a8648ce3d030107")
    other = _replace_once(pck.public_bytes(Encoding.DER), prime256v1, prime256v1[:-1] + b"\x08")
    quote = ev.TDX_QUOTE.replace(pck.public_bytes(Encoding.PEM), _pem(other))
    assert len(quote) == len(ev.TDX_QUOTE)
    verdict = tdx.verify(quote, now=ev.TDX_NOW)  # was UnsupportedAlgorithm
    assert verdict.status_of("tdx.qe_report.signature") == "failed"
    assert x509chain.public_key(x509.load_der_x509_certificate(other)) is None


def test_a_crl_whose_issuer_cannot_be_read_is_evidence_invalid() -> None:
    crl = _replace_once(ev.ROOT_CRL, b"\x0c\x11Intel SGX Root CA", b"\x0d\x11Intel SGX Root CA")
    with pytest.raises(EvidenceInvalid):  # was KeyError: 13 inside the CRL check
        tdx.Collateral.from_files(root_crl=crl)


def test_the_vectors_still_load_whole() -> None:
    """The eager reads refuse only unreadable certificates, never the real ones."""
    assert snp.verify(ev.SNP_REPORT, ev.SNP_VCEK, now=ev.SNP_NOW).ok
    assert nvidia.verify(ev.GPU_REPORT, ev.GPU_CHAIN, now=ev.GPU_NOW, nonce=ev.GPU_NONCE).ok
    assert ev.TDX_COLLATERAL.root_crl is not None and ev.TDX_COLLATERAL.pck_crl is not None
    assert dt.datetime(2023, 6, 20, tzinfo=dt.UTC) == ev.TDX_NOW
    assert json.loads(ev.TCB_INFO)["tcbInfo"]["id"] == "TDX"
