"""Intel's collateral is believed only when Intel signed it: TCB Info and QE Identity verify
to the Intel SGX Root CA over their exact bytes, CRLs are signed, current and consulted.

Real Intel documents (../shared/vectors/tdx and vectors/tcb-signing-chain.pem) throughout; a
revoked PCK needs a CRL Intel never issued, so that case uses tdx_forge's stand-in PKI.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from teeroute.attestation import tdx
from teeroute.attestation.errors import EvidenceInvalid
from teeroute.attestation.verdict import Verdict
from teeroute_operator.trust import TrustStore

from . import tdx_forge as forge
from .test_tdx import DIR, NOW, QUOTE, SIGNING_CHAIN

TCB_RAW = (DIR / "tcbinfo-response.json").read_bytes()
QE_RAW = (DIR / "qeidentity-response.json").read_bytes()


def directory(tmp_path: Path, **replace: bytes) -> Path:
    """Intel's collateral laid out as the operator's trust store and the CLI read it, with
    some documents replaced."""
    for name in ("tcbinfo-response.json", "qeidentity-response.json", "root-crl.der"):
        shutil.copy(DIR / name, tmp_path / name)
    shutil.copy(DIR / "pck-crl.der", tmp_path / "pck-crl.der")
    shutil.copy(SIGNING_CHAIN, tmp_path / "tcb-signing-chain.pem")
    for name, data in replace.items():
        (tmp_path / name.replace("_", "-")).write_bytes(data)
    return tmp_path


def verify(col: tdx.Collateral, now: dt.datetime = NOW) -> Verdict:
    return tdx.verify(QUOTE, now=now, collateral=col)


def tampered_tcb_info() -> bytes:
    """What a miner host would serve: Intel's TCB Info with a first level this platform meets
    marked UpToDate, Intel's signature left as it was."""
    doc = json.loads(TCB_RAW)
    level = json.loads(json.dumps(doc["tcbInfo"]["tcbLevels"][0]))
    for i, svn in enumerate([3, 3, 2, 2, 2, 1, 0, 2]):
        level["tcb"]["sgxtcbcomponents"][i]["svn"] = svn
    level["tcb"]["tdxtcbcomponents"][2]["svn"] = 4
    doc["tcbInfo"]["tcbLevels"].insert(0, level)
    return json.dumps(doc).encode()


def test_intels_signatures_verify_over_the_exact_bytes_it_served(tmp_path: Path) -> None:
    verdict = verify(tdx.Collateral.from_directory(directory(tmp_path)))
    for name in (
        "tdx.collateral.signing_chain",
        "tdx.collateral.tcb_info_signature",
        "tdx.collateral.qe_identity_signature",
    ):
        assert verdict.status_of(name) == "passed", name


def test_a_tcb_info_edited_to_say_up_to_date_is_not_believed(tmp_path: Path) -> None:
    # Before: the edited levels were read unsigned and the platform passed as UpToDate.
    col = tdx.Collateral.from_directory(
        directory(tmp_path, **{"tcbinfo-response.json": tampered_tcb_info()})
    )
    verdict = verify(col)
    assert not verdict.ok
    assert verdict.status_of("tdx.collateral.tcb_info_signature") == "failed"
    assert verdict.status_of("tdx.tcb.status") == "failed"


@pytest.mark.parametrize(
    ("document", "change"),
    [
        ("tcb", lambda raw: raw.replace(b'"id":"TDX"', b'"id": "TDX"')),  # whitespace only
        ("tcb", lambda raw: raw.replace(b'"UpToDate"', b'"OutOfDate"', 1)),
        ("qe", lambda raw: raw.replace(b'"isvsvn":4', b'"isvsvn":3')),
        ("qe", lambda raw: raw.replace(b"b6a601f0", b"b6a601f1")),  # the signature
    ],
)
def test_any_change_to_a_signed_document_breaks_its_signature(
    document: str, change: object
) -> None:
    tcb, qe = TCB_RAW, QE_RAW
    if document == "tcb":
        tcb = change(tcb)  # type: ignore[operator]
    else:
        qe = change(qe)  # type: ignore[operator]
    assert (tcb, qe) != (TCB_RAW, QE_RAW)
    col = tdx.Collateral.from_files(tcb, qe, None, None, SIGNING_CHAIN.read_bytes())
    name = "tcb_info" if document == "tcb" else "qe_identity"
    assert verify(col).status_of(f"tdx.collateral.{name}_signature") == "failed"


def test_a_second_member_beside_the_signed_one_is_refused() -> None:
    value = TCB_RAW[TCB_RAW.index(b"{", 1) : TCB_RAW.rindex(b',"signature"')]
    smuggled = TCB_RAW.rstrip()[:-1] + b',"tcbInfo":' + value + b"}"
    with pytest.raises(EvidenceInvalid, match="duplicate"):
        tdx.Collateral.from_files(smuggled)
    with pytest.raises(EvidenceInvalid, match="duplicate"):
        tdx.Collateral.from_files(TCB_RAW.replace(b'"id":"TDX"', b'"id":"TDX","id":"SGX"'))


def test_collateral_signed_by_another_key_than_intels_is_refused() -> None:
    # A signer of our own making, chained to our own root: not the pinned Intel root.
    keys = forge.pki()
    chain = keys.signer.public_bytes(forge.PEM) + keys.root.public_bytes(forge.PEM)
    tcb = forge.signed_document("tcbInfo", json.loads(TCB_RAW)["tcbInfo"])
    verdict = verify(tdx.Collateral.from_files(tcb, None, None, None, chain))
    assert verdict.status_of("tdx.collateral.signing_chain") == "failed"
    assert verdict.status_of("tdx.collateral.tcb_info_signature") == "failed"
    assert verdict.status_of("tdx.tcb.status") == "failed"


@pytest.mark.parametrize(
    ("now", "stale"),
    [
        (dt.datetime(2023, 7, 10, tzinfo=dt.UTC), {"tdx.crl.pck", "tdx.qe_identity"}),
        (
            dt.datetime(2023, 7, 20, tzinfo=dt.UTC),
            {"tdx.crl.pck", "tdx.qe_identity", "tdx.tcb.status"},
        ),
    ],
)
def test_collateral_past_its_next_update_fails(
    tmp_path: Path, now: dt.datetime, stale: set[str]
) -> None:
    verdict = verify(tdx.Collateral.from_directory(directory(tmp_path)), now=now)
    expired = {c.name for c in verdict.failed if "valid 2023" in c.detail}
    assert expired == stale


def test_a_crl_of_another_issuer_is_refused() -> None:
    # The PCK CRL offered as the root's: not signed by, nor naming, the Intel SGX Root CA.
    pck_crl = (DIR / "pck-crl.der").read_bytes()
    col = tdx.Collateral.from_files(None, None, pck_crl, pck_crl, None)
    verdict = verify(col)
    root = next(c for c in verdict.checks if c.name == "tdx.crl.root")
    assert root.status == "failed" and "not signed by its issuer" in root.detail
    assert verdict.status_of("tdx.crl.pck") == "passed"


def test_a_revoked_pck_is_refused() -> None:
    keys = forge.pki()
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(keys.pck.serial_number)
        .revocation_date(forge.NOW - dt.timedelta(days=2))
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(keys.ca.subject)
        .last_update(forge.NOW - dt.timedelta(days=1))
        .next_update(forge.NOW + dt.timedelta(days=1))
        .add_revoked_certificate(revoked)
        .sign(keys.ca_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    good = forge.collateral()
    col = tdx.Collateral(
        good.tcb_info,
        good.qe_identity,
        good.root_crl,
        x509.load_der_x509_crl(crl),
        good.signing_chain,
    )
    verdict = tdx.verify(forge.quote(4), now=forge.NOW, collateral=col, root=keys.root)
    check = next(c for c in verdict.checks if c.name == "tdx.crl.pck")
    assert check.status == "failed" and "Test PCK is revoked" in check.detail


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", "not a JSON object"),
        (b'{"tcbInfo":{}}', '"signature"'),
        (b'{"tcbInfo":{},"signature":"zz"}', "not hex"),
        (b'{"tcbInfo":{},"signature":"00"}', "64 bytes"),
        (TCB_RAW + b"x", "single JSON object"),
        (b"\xff", "UTF-8"),
        (b'{"tcbInfo":' + b"[" * 100_000, "not JSON"),
        (TCB_RAW.replace(b'"fmspc":"50806f000000"', b'"fmspc":"5080"'), "fmspc is not 6 bytes"),
        (TCB_RAW.replace(b'"pcesvn":11', b'"pcesvn":-1'), "pcesvn"),
    ],
)
def test_malformed_collateral_gets_a_typed_error(raw: bytes, message: str) -> None:
    with pytest.raises(EvidenceInvalid, match=message):
        tdx.Collateral.from_files(raw)


def test_oversized_collateral_is_refused_before_parsing() -> None:
    with pytest.raises(EvidenceInvalid, match="over"):
        tdx.Collateral.from_files(b" " * (600 * 1024))


def test_the_operators_trust_store_brings_intels_collateral_to_the_verifier(
    tmp_path: Path,
) -> None:
    # The path collateral takes in a cluster: the trust ConfigMap mounted at TRUST_DIR, tdx/.
    (tmp_path / "tdx").mkdir()
    directory(tmp_path / "tdx")
    store = TrustStore(tmp_path, allow_simulated=False)
    verdict = verify(store.current().tdx_collateral or tdx.Collateral())
    assert [c.name for c in verdict.failed] == ["tdx.tcb.status"]  # the old platform, only
    (tmp_path / "tdx" / "tcb-signing-chain.pem").unlink()  # rotated away: re-read, fails
    verdict = verify(store.current().tdx_collateral or tdx.Collateral())
    assert verdict.status_of("tdx.collateral.tcb_info_signature") == "failed"
