"""AMD SEV-SNP verification against a real Milan report, VCEK and AMD's roots."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from teeroute.attestation import snp
from teeroute.attestation.errors import CollateralUnavailable, EvidenceInvalid
from teeroute.attestation.policy import Challenge, Policy
from teeroute.attestation.verdict import Verdict

VECTORS = (
    Path(os.environ.get("TEEROUTE_VECTORS", Path(__file__).parents[3] / "shared" / "vectors"))
    / "sev-snp"
)
REPORT = (VECTORS / "report-milan.bin").read_bytes()
VCEK = (VECTORS / "vcek-milan.der").read_bytes()
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
MEASUREMENT = (
    "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b"
    "6bdf8a9ece31a5a608eb0cf2e4872b01"
)


def verify(report: bytes = REPORT, cert: bytes = VCEK, **kwargs: object) -> Verdict:
    return snp.verify(report, cert, now=kwargs.pop("now", NOW), **kwargs)  # type: ignore[arg-type]


def pem(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def test_the_real_report_verifies_with_every_check_named() -> None:
    verdict = verify()
    assert verdict.ok, verdict.failed
    assert [c.name for c in verdict.checks] == [
        "snp.chain.ark_pinned",
        "snp.chain.ark_self_signed",
        "snp.chain.ask_signed_by_ark",
        "snp.chain.vcek_signed_by_ask",
        "snp.chain.ca_usage",
        "snp.chain.validity",
        "snp.vcek.tcb_matches_report",
        "snp.vcek.chip_id_matches",
        "snp.signature",
    ]
    assert verdict.claims["measurement"] == MEASUREMENT
    assert verdict.claims["reported_tcb"] == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68}


def test_an_explicit_amd_chain_verifies_too() -> None:
    assert verify(chain_pem=pem("ask_ark_milan.pem")).ok


@pytest.mark.parametrize("offset", range(snp.SIGNED_SIZE))
def test_any_single_byte_change_in_the_signed_report_is_rejected(offset: int) -> None:
    corrupt = bytearray(REPORT)
    corrupt[offset] ^= 0x01
    try:
        verdict = verify(bytes(corrupt))
    except EvidenceInvalid:
        return  # the parser already refused it (version, algorithm, vmpl, key selector)
    assert verdict.status_of("snp.signature") == "failed"
    assert not verdict.ok


@pytest.mark.parametrize("offset", [0x2A0, 0x2A0 + 47, 0x2E8, 0x2E8 + 47])
def test_a_changed_signature_is_rejected(offset: int) -> None:
    corrupt = bytearray(REPORT)
    corrupt[offset] ^= 0x80
    assert verify(bytes(corrupt)).status_of("snp.signature") == "failed"


@pytest.mark.parametrize(
    ("chain", "failing"),
    [
        ("ask_ark_genoa.pem", "snp.chain.vcek_signed_by_ask"),
        ("ask_ark_turin_vcek.pem", "snp.chain.vcek_signed_by_ask"),
        ("ask_ark_milan_vlek.pem", "snp.chain.vcek_signed_by_ask"),
    ],
)
def test_the_wrong_amd_chain_is_rejected(chain: str, failing: str) -> None:
    verdict = verify(chain_pem=pem(chain))
    assert verdict.status_of(failing) == "failed"


def test_a_self_made_root_is_not_pinned() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa

    ask, ark = x509.load_pem_x509_certificates(pem("ask_ark_milan.pem"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake_ark = (
        x509.CertificateBuilder()
        .subject_name(ark.subject)
        .issuer_name(ark.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(ark.not_valid_before_utc)
        .not_valid_after(ark.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )
    chain = ask.public_bytes(Encoding.PEM) + fake_ark.public_bytes(Encoding.PEM)
    verdict = verify(chain_pem=chain)
    assert verdict.status_of("snp.chain.ark_pinned") == "failed"
    assert verdict.status_of("snp.chain.ask_signed_by_ark") == "failed"


@pytest.mark.parametrize(
    "when", [dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2030, 1, 1, tzinfo=dt.UTC)]
)
def test_certificates_outside_their_validity_are_rejected(when: dt.datetime) -> None:
    verdict = verify(now=when)
    assert verdict.status_of("snp.chain.validity") == "failed"
    assert "SEV-VCEK" in next(c.detail for c in verdict.checks if c.name == "snp.chain.validity")


def test_a_certificate_for_another_chip_or_tcb_is_rejected() -> None:
    other = bytearray(REPORT)
    other[0x1A0] ^= 0xFF  # chip_id (signed too: the signature fails as well)
    other[0x180] ^= 0x01  # reported TCB bootloader
    verdict = verify(bytes(other))
    assert verdict.status_of("snp.vcek.chip_id_matches") == "failed"
    assert verdict.status_of("snp.vcek.tcb_matches_report") == "failed"


def test_policy_reports_every_violation_at_once() -> None:
    policy = Policy(
        allowed_tee=frozenset({"tdx"}),
        allowed_measurements=frozenset({"00" * 48}),
        minimum_tcb={"snp": 8, "microcode": 200, "bootloader": 1},
        debug_forbidden=True,
    )
    verdict = verify(policy=policy)
    failed = {c.name: c.detail for c in verdict.failed}
    assert set(failed) == {
        "policy.tee_allowed",
        "policy.measurement",
        "policy.minimum_tcb",
        "policy.debug_forbidden",
    }
    assert MEASUREMENT in failed["policy.measurement"]  # names the value it saw
    assert failed["policy.minimum_tcb"] == "microcode 68 < 200; snp 5 < 8"


def test_policy_that_matches_passes_and_unset_checks_say_not_checked() -> None:
    policy = Policy(
        allowed_tee=frozenset({"sev-snp"}),
        allowed_measurements=frozenset({MEASUREMENT}),
        minimum_tcb={"snp": 5},
        debug_forbidden=False,
    )
    verdict = verify(policy=policy)
    assert verdict.ok
    assert verdict.status_of("policy.measurement") == "passed"
    assert verdict.status_of("policy.debug_forbidden") == "not_checked"
    assert verdict.status_of("binding.report_data") == "not_checked"


def test_report_data_must_bind_the_challenge() -> None:
    challenge = Challenge(
        nonce=b"n" * 32, issued_at=NOW, hpke_public=b"h" * 32, signing_public=b"s" * 32
    )
    verdict = verify(challenge=challenge)
    assert verdict.status_of("binding.report_data") == "failed"


def test_stale_challenge_is_rejected() -> None:
    challenge = Challenge(b"n" * 32, NOW - dt.timedelta(minutes=10), b"h", b"s")
    policy = Policy(
        allowed_tee=frozenset({"sev-snp"}), debug_forbidden=None, max_age=dt.timedelta(minutes=5)
    )
    assert verify(policy=policy, challenge=challenge).status_of("freshness.age") == "failed"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r[:-1], "1183 bytes"),
        (lambda r: r + b"\0", "1185 bytes"),
        (lambda r: b"", "0 bytes"),
        (lambda r: (7).to_bytes(4, "little") + r[4:], "version 7"),
        (lambda r: r[:0x34] + (2).to_bytes(4, "little") + r[0x38:], "signature algorithm 2"),
        (lambda r: r[:0x30] + (4).to_bytes(4, "little") + r[0x34:], "VMPL 4"),
        (lambda r: r[: 0x2A0 + 60] + b"\1" + r[0x2A0 + 61 :], "beyond P-384"),
    ],
)
def test_malformed_reports_are_refused_by_the_parser(mutate: object, message: str) -> None:
    with pytest.raises(EvidenceInvalid, match=message):
        snp.parse_report(mutate(REPORT))  # type: ignore[operator]


def test_an_unknown_issuer_needs_a_chain() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Somebody")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    with pytest.raises(CollateralUnavailable, match="pass --chain"):
        verify(cert=cert.public_bytes(Encoding.DER))


def test_random_and_mutated_bytes_only_ever_raise_typed_errors() -> None:
    rng = random.Random(4)
    samples = [rng.randbytes(rng.choice([0, 1, 100, 1183, 1184, 1185, 4096])) for _ in range(300)]
    for _ in range(300):
        mutated = bytearray(REPORT)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        samples.append(bytes(mutated))
    for sample in samples:
        with contextlib.suppress(EvidenceInvalid, CollateralUnavailable):
            verify(sample)
