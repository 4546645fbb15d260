"""Where evidence comes from: the TEE itself (configfs-tsm) or the simulated TEE.

Each provider turns 64 bytes of report_data into raw evidence plus the certificates a
verifier needs. The enclave agent uses them for its evidence, and the gateway for its own when
it runs in a TEE; failures are ProviderError, which both answer with 503.

A simulated TEE "launched" the code it reports: `code_measurement(package)` hashes the
sources of the package that asks (the agent measures `teeroute_enclave`, the gateway
`teeroute_gateway`), so a change of code is a change of measurement, as with a real image.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from teeroute.attestation import simulated, x509chain
from teeroute.errors import TeerouteError

TSM_REPORTS = Path("/sys/kernel/config/tsm/report")
VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")


class ProviderError(TeerouteError):
    pass


@dataclass(frozen=True)
class Evidence:
    raw: bytes
    certificates: list[str]


class Provider(Protocol):
    tee: str

    def evidence(self, report_data: bytes) -> Evidence: ...


class SimulatedProvider:
    """A simulated chip: the node's chip key and certificate from a directory holding
    `<node>.key` and `<node>.crt` (a Secret the chart makes), reporting `measurement` (the
    caller's `code_measurement`, unless one is configured)."""

    tee = "simulated"

    def __init__(
        self,
        directory: Path,
        node: str,
        measurement: bytes,
        override_file: Path | None = None,
    ) -> None:
        try:
            key = serialization.load_pem_private_key(
                (directory / f"{node}.key").read_bytes(), password=None
            )
            self._cert_pem = (directory / f"{node}.crt").read_text()
        except (OSError, ValueError) as exc:
            raise ProviderError(
                f"no simulated chip for node {node!r} in {directory}: {exc}"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ProviderError(f"the chip key of {node!r} is not an EC key")
        self._key = key
        self.measurement = measurement
        if len(self.measurement) != 48:
            raise ProviderError("a simulated measurement is 48 bytes")
        self._override_file = override_file

    def current_measurement(self) -> bytes:
        """The launched measurement, unless the override file (the simulated TEE's fault
        injection: as if the VM had been relaunched with other code) holds 96 hex digits."""
        if self._override_file is None:
            return self.measurement
        try:
            text = self._override_file.read_text().strip()
        except OSError:
            return self.measurement
        try:
            value = bytes.fromhex(text)
        except ValueError as exc:
            raise ProviderError("the measurement override is not hex") from exc
        if len(value) != 48:
            raise ProviderError("the measurement override is not 48 bytes")
        return value

    def evidence(self, report_data: bytes) -> Evidence:
        raw = simulated.make_report(
            self._key, measurement=self.current_measurement(), report_data=report_data
        )
        return Evidence(raw, [self._cert_pem])


def code_measurement(package: Path) -> bytes:
    """SHA-384 over the source files of `package` (a package directory), each as its path
    relative to it, a NUL and its bytes, in path order: what the simulated TEE 'launched'."""
    package = package.resolve()
    if not (package / "__init__.py").is_file():
        raise ProviderError(f"{package} is not a Python package to measure")
    digest = hashlib.sha384()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0")
        digest.update(source.read_bytes())
    return digest.digest()


class ConfigfsTsmProvider:
    """A real SEV-SNP or TDX guest, through the kernel's configfs-tsm interface: write
    report_data to `inblob`, read the report or quote from `outblob` (and, for SNP, the
    certificate table from `auxblob`), checking `generation` against concurrent writers."""

    def __init__(self, root: Path = TSM_REPORTS) -> None:
        if not root.is_dir():
            raise ProviderError(
                f"{root} is missing: this is not a TEE guest with configfs-tsm "
                "(Linux 6.7+), or configfs is not mounted"
            )
        self.root = root
        probe = self._entry()
        try:
            provider = (probe / "provider").read_text().strip()
        finally:
            probe.rmdir()
        tees = {"sev_guest": "sev-snp", "tdx_guest": "tdx"}
        if provider not in tees:
            raise ProviderError(f"unknown configfs-tsm provider {provider!r}")
        self.tee = tees[provider]

    def _entry(self) -> Path:
        entry = self.root / f"teeroute-{os.getpid()}-{os.urandom(4).hex()}"
        entry.mkdir()
        return entry

    def evidence(self, report_data: bytes) -> Evidence:
        entry = self._entry()
        try:
            before = int((entry / "generation").read_text())
            (entry / "inblob").write_bytes(report_data)
            raw = (entry / "outblob").read_bytes()
            aux = (entry / "auxblob").read_bytes() if self.tee == "sev-snp" else b""
            if int((entry / "generation").read_text()) != before + 1:
                raise ProviderError("another writer used the report entry: retry")
        except OSError as exc:
            raise ProviderError(f"configfs-tsm: {exc}") from exc
        finally:
            entry.rmdir()
        return Evidence(raw, snp_certificates(aux))


def snp_certificates(table: bytes) -> list[str]:
    """The VCEK or VLEK from an SNP certificate table (GUID, offset, length entries ending
    with a zero GUID), as PEM."""
    found = []
    for index in range(0, len(table) - 23, 24):
        guid = uuid.UUID(bytes_le=table[index : index + 16])
        if guid.int == 0:
            break
        offset = int.from_bytes(table[index + 16 : index + 20], "little")
        length = int.from_bytes(table[index + 20 : index + 24], "little")
        if guid in (VCEK_GUID, VLEK_GUID) and offset + length <= len(table):
            cert = x509chain.load_der(table[offset : offset + length], "snp.aux")
            found.append(cert.public_bytes(serialization.Encoding.PEM).decode())
    return found
