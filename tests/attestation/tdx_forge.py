"""A stand-in Intel PKI for tests that need quotes or collateral Intel never signed.

No real TDX quote version 5 is in the shared vectors, and the real collateral says this SPR
platform is older than every TCB level, so no real input can show a v5 quote or an accepted
TCB. Those tests re-wrap the REAL v4 TD report (and QE report, auth data, PCK SGX extension)
and sign them with keys generated here, never Intel's: a test root stands in for the Intel SGX
Root CA (passed to `tdx.verify(root=...)`), a test CA and PCK (carrying the real PCK's SGX
extension, so FMSPC and TCB components are the real platform's) and a test "Intel SGX TCB
Signing" key that signs TCB Info and QE Identity (the real documents' values, edited).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from teeroute.attestation import tdx

from .test_snp import VECTORS

DIR = VECTORS.parent / "tdx"
QUOTE = (DIR / "quote-v4-spr-e4.dat").read_bytes()
REAL = tdx.parse_quote(QUOTE)
NOW = dt.datetime(2023, 6, 20, tzinfo=dt.UTC)
PEM = serialization.Encoding.PEM


def rs(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    ca: bool,
    extra: x509.UnrecognizedExtension | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, issuer_key = issuer or (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=365))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class Pki:
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    ca_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    pck_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    signer_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)

    @cached_property
    def root(self) -> x509.Certificate:
        return _cert("Test SGX Root CA", self.root_key, None, ca=True)

    @cached_property
    def ca(self) -> x509.Certificate:
        return _cert("Test PCK Platform CA", self.ca_key, (self.root.subject, self.root_key), True)

    @cached_property
    def pck(self) -> x509.Certificate:
        real_pck = x509.load_pem_x509_certificates(REAL.pck_chain_pem)[0]
        sgx = real_pck.extensions.get_extension_for_oid(x509.ObjectIdentifier(tdx.SGX_EXT))
        assert isinstance(sgx.value, x509.UnrecognizedExtension)
        return _cert("Test PCK", self.pck_key, (self.ca.subject, self.ca_key), False, sgx.value)

    @cached_property
    def signer(self) -> x509.Certificate:
        return _cert(
            "Intel SGX TCB Signing", self.signer_key, (self.root.subject, self.root_key), False
        )


@cache
def pki() -> Pki:
    return Pki()


def td15_body(tee_tcb_svn_2: bytes, mrservicetd: bytes = bytes(48)) -> bytes:
    """The real TDX 1.0 TD report extended to a TDX 1.5 one."""
    return QUOTE[48 : 48 + 584] + tee_tcb_svn_2 + mrservicetd


def quote(
    version: int = 5,
    body: bytes | None = None,
    body_type: int | None = None,
    keys: Pki | None = None,
) -> bytes:
    """A quote of `version` around `body` (default: the real TDX 1.0 TD report), signed by a
    fresh attestation key vouched for by the test PCK."""
    keys = keys or pki()
    body = body if body is not None else QUOTE[48 : 48 + 584]
    header = struct.pack("<H", version) + QUOTE[2:48]
    if version == 5:
        kind = body_type if body_type is not None else (3 if len(body) == 648 else 2)
        header += struct.pack("<HI", kind, len(body))
    signed = header + body
    attestation = _key()
    numbers = attestation.public_key().public_numbers()
    public = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
    qe = bytearray(REAL.qe_report.raw)
    qe[320:384] = hashlib.sha256(public + REAL.qe_auth_data).digest() + bytes(32)
    chain = b"".join(c.public_bytes(PEM) for c in (keys.pck, keys.ca, keys.root))
    inner = struct.pack("<HI", 5, len(chain)) + chain
    cert6 = bytes(qe) + rs(keys.pck_key, bytes(qe))
    cert6 += struct.pack("<H", len(REAL.qe_auth_data)) + REAL.qe_auth_data + inner
    sig_data = rs(attestation, signed) + public + struct.pack("<HI", 6, len(cert6)) + cert6
    return signed + struct.pack("<I", len(sig_data)) + sig_data


def real_value(name: str, key: str) -> dict[str, Any]:
    return dict(json.loads((DIR / name).read_text())[key])


def up_to_date_tcb_info(seam_svn: int = 5) -> dict[str, Any]:
    """The real TCB Info with a first level this platform meets, UpToDate from TDX SVN 2 (the
    SEAM loader) `seam_svn` on (the real TD report's is 4), OutOfDate below it down to 4."""
    info = copy.deepcopy(real_value("tcbinfo-response.json", "tcbInfo"))
    level = copy.deepcopy(info["tcbLevels"][0])
    for i, svn in enumerate([3, 3, 2, 2, 2, 1, 0, 2]):
        level["tcb"]["sgxtcbcomponents"][i]["svn"] = svn
    level["tcb"]["tdxtcbcomponents"][2]["svn"] = seam_svn
    older = copy.deepcopy(level)
    older["tcb"]["tdxtcbcomponents"][2]["svn"] = 4
    older["tcbStatus"] = "OutOfDate"
    info["tcbLevels"] = [level, older, *info["tcbLevels"]]
    return info


def signed_document(key: str, value: dict[str, Any], keys: Pki | None = None) -> bytes:
    """An Intel PCS response: the value's exact text and a signature over it."""
    text = json.dumps(value, separators=(",", ":"))
    signature = rs((keys or pki()).signer_key, text.encode()).hex()
    return f'{{"{key}":{text},"signature":"{signature}"}}'.encode()


def collateral(tcb_info: dict[str, Any] | None = None, keys: Pki | None = None) -> tdx.Collateral:
    keys = keys or pki()
    return tdx.Collateral.from_files(
        signed_document("tcbInfo", tcb_info or up_to_date_tcb_info(), keys),
        signed_document(
            "enclaveIdentity", real_value("qeidentity-response.json", "enclaveIdentity"), keys
        ),
        _crl(keys.root, keys.root_key),
        _crl(keys.ca, keys.ca_key),
        keys.signer.public_bytes(PEM) + keys.root.public_bytes(PEM),
    )


def _crl(issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bytes:
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(NOW - dt.timedelta(days=1))
        .next_update(NOW + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.DER)
