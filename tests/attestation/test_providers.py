"""Evidence providers in the shared library: each component measures its own package (the
agent's measurement is the one it always had), the simulated chip's evidence verifies, the
fault-injection override is honoured, and the SNP certificate table yields the VCEK or VLEK."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from teeroute.attestation import simulated
from teeroute.attestation.policy import Policy
from teeroute.attestation.providers import (
    VCEK_GUID,
    VLEK_GUID,
    ProviderError,
    SimulatedProvider,
    code_measurement,
    snp_certificates,
)
from teeroute_enclave.__main__ import PACKAGE as AGENT
from teeroute_gateway.identity import PACKAGE as GATEWAY

NOW = dt.datetime.now(dt.UTC)


def sources_digest(package: Path) -> bytes:
    """The measurement as specified, written out independently: SHA-384 over every .py file
    under the package, in path order, each as relative path, NUL, contents."""
    digest = hashlib.sha384()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.digest()


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated.write_chip_dir(tmp_path_factory.mktemp("chips"), "node-a", NOW)


def test_each_component_measures_its_own_package() -> None:
    assert AGENT.name == "teeroute_enclave" and GATEWAY.name == "teeroute_gateway"
    agent, gateway = code_measurement(AGENT), code_measurement(GATEWAY)
    assert agent == sources_digest(AGENT)  # the agent's value is what it always was
    assert gateway == sources_digest(GATEWAY)
    assert agent != gateway and len(agent) == len(gateway) == 48


def test_a_directory_that_is_no_package_is_not_measured(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="not a Python package"):
        code_measurement(tmp_path)


def test_simulated_evidence_round_trips_through_the_verifier(chips: Path) -> None:
    measurement, report_data = os.urandom(48), os.urandom(64)
    evidence = SimulatedProvider(chips, "node-a", measurement).evidence(report_data)
    verdict = simulated.verify(
        evidence.raw,
        evidence.certificates[0].encode(),
        (chips / "root.crt").read_bytes(),
        now=dt.datetime.now(dt.UTC),
        policy=Policy(
            allowed_tee=frozenset({"simulated"}),
            allowed_measurements=frozenset({measurement.hex()}),
        ),
    )
    assert verdict.ok, verdict.failed
    assert verdict.claims["report_data"] == report_data.hex()


@pytest.mark.parametrize(
    ("override", "outcome"),
    [
        (None, "launched"),
        ("cd" * 48 + "\n", "override"),
        ("not hex", "the measurement override is not hex"),
        ("ab" * 10, "not 48 bytes"),
    ],
)
def test_the_measurement_override_is_fault_injection(
    chips: Path, tmp_path: Path, override: str | None, outcome: str
) -> None:
    launched = bytes(48)
    path = tmp_path / "override"
    if override is not None:
        path.write_text(override)
    provider = SimulatedProvider(chips, "node-a", launched, override_file=path)
    if outcome == "launched":
        assert provider.current_measurement() == launched
    elif outcome == "override":
        assert provider.current_measurement() == bytes.fromhex("cd" * 48)
    else:
        with pytest.raises(ProviderError, match=outcome):
            provider.current_measurement()


@pytest.mark.parametrize(
    ("directory_of", "node", "measurement", "message"),
    [
        ("chips", "elsewhere", bytes(48), "no simulated chip for node 'elsewhere'"),
        ("chips", "node-a", bytes(47), "48 bytes"),
        ("empty", "node-a", bytes(48), "no simulated chip"),
    ],
)
def test_a_simulated_chip_that_cannot_be_used_is_refused(
    chips: Path, tmp_path: Path, directory_of: str, node: str, measurement: bytes, message: str
) -> None:
    directory = chips if directory_of == "chips" else tmp_path
    with pytest.raises(ProviderError, match=message):
        SimulatedProvider(directory, node, measurement)


def _cert(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _entry(guid: uuid.UUID, offset: int, length: int) -> bytes:
    return guid.bytes_le + offset.to_bytes(4, "little") + length.to_bytes(4, "little")


def test_the_snp_certificate_table_yields_the_vcek_and_vlek_only() -> None:
    vcek, vlek, ark = _cert("VCEK"), _cert("VLEK"), _cert("ARK")
    ark_guid = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
    start = 24 * 5  # four entries and the zero entry that ends the table
    table = (
        _entry(VCEK_GUID, start, len(vcek))
        + _entry(ark_guid, start + len(vcek), len(ark))
        + _entry(VLEK_GUID, start + len(vcek) + len(ark), len(vlek))
        + _entry(VCEK_GUID, 10_000, len(vcek))  # points past the table: skipped
        + bytes(24)
        + vcek
        + ark
        + vlek
    )
    found = [x509.load_pem_x509_certificate(pem.encode()) for pem in snp_certificates(table)]
    names = [c.subject.rfc4514_string() for c in found]
    assert names == ["CN=VCEK", "CN=VLEK"]


def test_an_empty_or_truncated_table_yields_nothing() -> None:
    assert snp_certificates(b"") == []
    assert snp_certificates(_entry(VCEK_GUID, 24, 100)[:20]) == []
