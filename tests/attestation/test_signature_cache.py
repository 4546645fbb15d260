"""The certificate signature cache (x509chain.SIGNATURES): a chain is verified once per
process, and nothing about a certificate that differs by one byte is taken from the cache."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from teeroute.attestation import x509chain

NOW = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(signer, hashes.SHA384())
    )


@pytest.fixture
def chain() -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    root_key, chip_key = (
        ec.generate_private_key(ec.SECP384R1()),
        ec.generate_private_key(ec.SECP384R1()),
    )
    root = _cert("root", root_key, "root", root_key)
    return _cert("chip", chip_key, "root", root_key), root, chip_key


def test_a_forged_certificate_with_the_same_names_fails_after_the_genuine_one_passed(
    chain: tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    chip, root, chip_key = chain
    assert x509chain.issued_by("c", chip, root).status == "passed"
    # The attacker's: same subject, issuer and key, signed by a key of its own.
    rogue = ec.generate_private_key(ec.SECP384R1())
    forged = _cert("chip", chip_key, "root", rogue)
    check = x509chain.issued_by("c", forged, root)
    assert check.status == "failed"
    assert "is not signed by" in check.detail
    # and the genuine one still passes (the failure did not displace it)
    assert x509chain.issued_by("c2", chip, root).status == "passed"


def test_a_certificate_with_one_signature_byte_changed_fails(
    chain: tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    chip, root, _ = chain
    assert x509chain.issued_by("c", chip, root).status == "passed"
    der = bytearray(chip.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature's last integer
    try:
        tampered = x509.load_der_x509_certificate(bytes(der))
    except ValueError:
        pytest.skip("the flipped byte made the DER unreadable, not the signature wrong")
    assert x509chain.issued_by("c", tampered, root).status == "failed"


def test_a_known_pair_is_not_verified_again_and_the_cache_is_bounded(
    chain: tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chip, root, _ = chain
    calls: list[str] = []
    real = x509chain._verify_signature

    def counting(cert: x509.Certificate, issuer: x509.Certificate) -> tuple[bool, str]:
        calls.append("v")
        return real(cert, issuer)

    monkeypatch.setattr(x509chain, "_verify_signature", counting)
    cache = x509chain._Signatures(size=2)
    for _ in range(5):
        assert cache.check(chip, root)[0]
    assert calls == ["v"]
    assert not cache.check(root, chip)[0]  # the pair the other way round is another key
    cache.check(root, root)  # a third pair pushes the least recently used out
    assert len(cache._seen) == 2
    cache.check(chip, root)
    assert calls == ["v"] * 4  # chip under root had been pushed out: verified again


def test_the_check_name_is_the_callers_not_the_cached_ones(
    chain: tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    chip, root, _ = chain
    assert x509chain.issued_by("one", chip, root).name == "one"
    assert x509chain.issued_by("two", chip, root).name == "two"
