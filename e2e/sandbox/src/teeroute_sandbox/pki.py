"""The sandbox's certificates and kubeconfigs.

One CA signs the apiserver's serving certificate and a client certificate per identity,
so every client verifies the apiserver and RBAC sees who calls (the controller-manager and
scheduler run as their real `system:` users). The CA also becomes `kube-root-ca.crt`, which
pods use to verify the apiserver. Keys are ECDSA P-256, written 0600.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from teeroute_sandbox.errors import SandboxError

_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class Identity:
    """A client certificate subject: user name and groups (RBAC subjects)."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


ADMIN = Identity("admin", "teeroute-sandbox-admin", ("system:masters",))
CONTROLLER_MANAGER = Identity("controller-manager", "system:kube-controller-manager")
SCHEDULER = Identity("scheduler", "system:kube-scheduler")
NODES = Identity("nodes", "teeroute-sandbox-nodes", ("system:masters",))
"""kwok and the process runner: they act for every node (status, leases, pod tokens)."""


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def kubeconfig(self, identity: Identity) -> Path:
        return self.dir / f"{identity.file_stem}.kubeconfig"


def ensure(pki: Pki, server: str, ips: list[str], dns: list[str]) -> None:
    """Create whatever of the PKI is missing (idempotent: existing files are kept)."""
    pki.dir.mkdir(parents=True, exist_ok=True)
    if not pki.ca_cert.exists():
        _write_ca(pki)
    ca_key = _load_key(pki.ca_key)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    if not pki.serving_cert.exists():
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        _issue(
            ca,
            ca_key,
            "kube-apiserver",
            (),
            sans,
            ExtendedKeyUsageOID.SERVER_AUTH,
            pki.serving_cert,
            pki.serving_key,
        )
    if not pki.sa_key.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(pki.sa_key, key)
        pki.sa_pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    for identity in (ADMIN, CONTROLLER_MANAGER, SCHEDULER, NODES):
        if not pki.kubeconfig(identity).exists():
            _write_client_kubeconfig(pki, ca, ca_key, identity, server)


def _write_ca(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "teeroute-sandbox-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + 10 * _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(pki.ca_key, key)
    pki.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    groups: tuple[str, ...],
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    cert_path: Path,
    key_path: Path,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_client_kubeconfig(
    pki: Pki,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    identity: Identity,
    server: str,
) -> None:
    cert_path = pki.dir / f"{identity.file_stem}.crt"
    key_path = pki.dir / f"{identity.file_stem}.key"
    _issue(
        ca,
        ca_key,
        identity.user,
        identity.groups,
        [],
        ExtendedKeyUsageOID.CLIENT_AUTH,
        cert_path,
        key_path,
    )
    write_kubeconfig(
        pki.kubeconfig(identity),
        server,
        pki.ca_cert.read_bytes(),
        cert_path.read_bytes(),
        key_path.read_bytes(),
        user=identity.user,
    )


def write_kubeconfig(
    path: Path,
    server: str,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    user: str,
    context: str = "teeroute-sandbox",
) -> None:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
    }
    _write_private(path, yaml.safe_dump(config).encode())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SandboxError(f"{path} is not an ECDSA key: delete the sandbox state and retry")
    return key
