"""Intel PCS collateral for TDX quotes, parsed into frozen types (never indexed as raw JSON).

    tcbinfo-response.json      {"tcbInfo": {...}, "signature": hex}    (TCB Info, id "TDX")
    qeidentity-response.json   {"enclaveIdentity": {...}, "signature": hex}  (id "TD_QE")
    tcb-signing-chain.pem      Intel SGX TCB Signing cert, then the Intel SGX Root CA: the
                               PCS "TCB-Info-Issuer-Chain" header (the same for QE Identity)
    root-crl.der, pck-crl.der  CRLs of the Intel SGX Root CA and of the PCK Platform/Processor CA

Intel signs TCB Info and QE Identity with ECDSA P-256 over the exact bytes of the `tcbInfo` /
`enclaveIdentity` value as it stands in the response, so `signed_value` cuts those bytes out
of the document, never re-serialising; the typed value is parsed from the very same bytes, and
duplicate keys anywhere are refused (a second "tcbInfo" beside the signed one must not win).
Checking signatures and deciding what the collateral says is tdx_tcb.py's job.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509

from teeroute.attestation import x509chain
from teeroute.attestation.errors import EvidenceInvalid

COLLATERAL_FILES = (
    "tcbinfo-response.json",
    "qeidentity-response.json",
    "root-crl.der",
    "pck-crl.der",
    "tcb-signing-chain.pem",
)
MAX_PART = 512 * 1024
"""No real collateral document comes near this; a larger one is refused before parsing."""
_WS = " \t\n\r"
T = TypeVar("T")


class _Bad(ValueError):
    pass


@dataclass(frozen=True)
class Signed:
    """The exact bytes Intel signed and its signature (r‖s, 64 bytes)."""

    body: bytes
    signature: bytes


@dataclass(frozen=True)
class Level:
    """One TCB level of a TDX module identity or of the QE Identity."""

    isvsvn: int
    status: str
    advisories: tuple[str, ...]


@dataclass(frozen=True)
class TcbLevel:
    sgx_svns: tuple[int, ...]
    pce_svn: int
    tdx_svns: tuple[int, ...]
    status: str
    advisories: tuple[str, ...]


@dataclass(frozen=True)
class ModuleIdentity:
    """The TDX module (SEAM) Intel vouches for: MRSIGNERSEAM, SEAMATTRIBUTES under a mask."""

    id: str
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    levels: tuple[Level, ...]


@dataclass(frozen=True)
class TcbInfo:
    id: str
    version: int
    issue_date: dt.datetime
    next_update: dt.datetime
    fmspc: bytes
    pce_id: bytes
    evaluation_number: int
    module: ModuleIdentity
    module_identities: tuple[ModuleIdentity, ...]
    levels: tuple[TcbLevel, ...]
    signed: Signed


@dataclass(frozen=True)
class QeIdentity:
    id: str
    version: int
    issue_date: dt.datetime
    next_update: dt.datetime
    evaluation_number: int
    miscselect: int
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    levels: tuple[Level, ...]
    signed: Signed


@dataclass(frozen=True)
class Collateral:
    """Intel PCS collateral for the quote's platform; any part may be missing (its checks
    then say "not checked", which fails a verdict unless the pool opted out)."""

    tcb_info: TcbInfo | None = None
    qe_identity: QeIdentity | None = None
    root_crl: x509.CertificateRevocationList | None = None
    pck_crl: x509.CertificateRevocationList | None = None
    signing_chain: tuple[x509.Certificate, ...] | None = None
    """The TCB Signing certificate (first) and the root it chains to."""

    @classmethod
    def from_files(
        cls,
        tcb_info: bytes | None = None,
        qe_identity: bytes | None = None,
        root_crl: bytes | None = None,
        pck_crl: bytes | None = None,
        signing_chain: bytes | None = None,
    ) -> Collateral:
        for part in (tcb_info, qe_identity, root_crl, pck_crl, signing_chain):
            if part is not None and len(part) > MAX_PART:
                raise EvidenceInvalid("tdx.collateral", f"a part is over {MAX_PART} bytes")
        return cls(
            _maybe(tcb_info, parse_tcb_info),
            _maybe(qe_identity, parse_qe_identity),
            _maybe(root_crl, _crl),
            _maybe(pck_crl, _crl),
            _maybe(signing_chain, _chain),
        )

    @classmethod
    def from_directory(cls, directory: Path) -> Collateral:
        """From Intel PCS responses saved in `directory` under COLLATERAL_FILES' names
        (any may be missing)."""

        def part(name: str) -> bytes | None:
            path = directory / name
            try:
                return path.read_bytes() if path.exists() else None
            except OSError as exc:
                raise EvidenceInvalid("tdx.collateral", f"cannot read {path}: {exc}") from exc

        return cls.from_files(*(part(name) for name in COLLATERAL_FILES))


def _maybe(raw: bytes | None, parse: Callable[[bytes], T]) -> T | None:
    return None if raw is None else parse(raw)


def _crl(raw: bytes) -> x509.CertificateRevocationList:
    try:
        crl = x509.load_der_x509_crl(raw)
        # cryptography reads these on first use: a malformed one must be refused here, not
        # raise ValueError or KeyError inside a check later
        _ = (crl.issuer, crl.extensions, [(r.serial_number, r.extensions) for r in crl])
        return crl
    except x509chain.UNREADABLE as exc:
        raise EvidenceInvalid("tdx.collateral", f"not a DER CRL: {exc}") from exc


def _chain(raw: bytes) -> tuple[x509.Certificate, ...]:
    return tuple(x509chain.load_pem_chain(raw, "tdx.collateral.signing_chain"))


def parse_tcb_info(raw: bytes) -> TcbInfo:
    try:
        signed, value = signed_value(raw, "tcbInfo")
        levels = tuple(_tcb_level(v) for v in _list(value, "tcbLevels"))
        return TcbInfo(
            id=_str(value, "id"),
            version=_int(value, "version"),
            issue_date=_time(value, "issueDate"),
            next_update=_time(value, "nextUpdate"),
            fmspc=_hex(value, "fmspc", 6),
            pce_id=_hex(value, "pceId", 2),
            evaluation_number=_int(value, "tcbEvaluationDataNumber"),
            module=_module(_obj(value, "tdxModule"), "TDX_00"),
            module_identities=tuple(
                _module(m, _str(m, "id")) for m in _list(value, "tdxModuleIdentities", [])
            ),
            levels=levels,
            signed=signed,
        )
    except _Bad as exc:
        raise EvidenceInvalid("tdx.collateral", f"TCB Info: {exc}") from exc


def parse_qe_identity(raw: bytes) -> QeIdentity:
    try:
        signed, value = signed_value(raw, "enclaveIdentity")
        return QeIdentity(
            id=_str(value, "id"),
            version=_int(value, "version"),
            issue_date=_time(value, "issueDate"),
            next_update=_time(value, "nextUpdate"),
            evaluation_number=_int(value, "tcbEvaluationDataNumber"),
            miscselect=int.from_bytes(_hex(value, "miscselect", 4), "big"),
            miscselect_mask=int.from_bytes(_hex(value, "miscselectMask", 4), "big"),
            attributes=_hex(value, "attributes", 16),
            attributes_mask=_hex(value, "attributesMask", 16),
            mrsigner=_hex(value, "mrsigner", 32),
            isvprodid=_int(value, "isvprodid"),
            levels=tuple(_level(v) for v in _list(value, "tcbLevels")),
            signed=signed,
        )
    except _Bad as exc:
        raise EvidenceInvalid("tdx.collateral", f"QE Identity: {exc}") from exc


def signed_value(raw: bytes, key: str) -> tuple[Signed, Mapping[str, Any]]:
    """The exact bytes of the top-level `key` value of an Intel PCS response, with the
    response's signature, and the value parsed from those same bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad("not UTF-8") from exc
    try:
        members = _top_level(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _Bad(f"not JSON: {type(exc).__name__}") from exc
    if key not in members or "signature" not in members:
        raise _Bad(f'expected "{key}" and "signature"')
    body, value = members[key]
    signature = members["signature"][1]
    if not isinstance(value, dict) or not isinstance(signature, str):
        raise _Bad(f"{key} must be an object and signature a string")
    try:
        sig = bytes.fromhex(signature)
    except ValueError as exc:
        raise _Bad("signature is not hex") from exc
    if len(sig) != 64:
        raise _Bad("signature is not 64 bytes")
    return Signed(body.encode("utf-8"), sig), value


def _top_level(text: str) -> dict[str, tuple[str, Any]]:
    """{key: (exact source text of the value, parsed value)} of a JSON object document."""
    decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates)
    members: dict[str, tuple[str, Any]] = {}
    i = _skip(text, 0)
    if text[i : i + 1] != "{":
        raise _Bad("not a JSON object")
    i = _skip(text, i + 1)
    while text[i : i + 1] == '"':
        key, i = decoder.raw_decode(text, i)
        i = _skip(text, i)
        if text[i : i + 1] != ":" or key in members:
            raise _Bad(f"malformed or duplicate member {key!r}")
        start = _skip(text, i + 1)
        value, end = decoder.raw_decode(text, start)
        members[key] = (text[start:end], value)
        i = _skip(text, end)
        if text[i : i + 1] != ",":
            break
        i = _skip(text, i + 1)
    if text[i : i + 1] != "}" or _skip(text, i + 1) != len(text):
        raise _Bad("not a single JSON object")
    return members


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise _Bad("duplicate keys")
    return dict(pairs)


def _tcb_level(raw: Any) -> TcbLevel:
    tcb = _obj(raw, "tcb")
    sgx = tuple(_int(c, "svn") for c in _list(tcb, "sgxtcbcomponents"))
    tdx = tuple(_int(c, "svn") for c in _list(tcb, "tdxtcbcomponents"))
    if len(sgx) != 16 or len(tdx) != 16:
        raise _Bad("a TCB level needs 16 SGX and 16 TDX components")
    return TcbLevel(sgx, _int(tcb, "pcesvn"), tdx, _str(raw, "tcbStatus"), _advisories(raw))


def _level(raw: Any) -> Level:
    return Level(_int(_obj(raw, "tcb"), "isvsvn"), _str(raw, "tcbStatus"), _advisories(raw))


def _module(raw: Any, name: str) -> ModuleIdentity:
    return ModuleIdentity(
        id=name,
        mrsigner=_hex(raw, "mrsigner", 48),
        attributes=_hex(raw, "attributes", 8),
        attributes_mask=_hex(raw, "attributesMask", 8),
        levels=tuple(_level(v) for v in _list(raw, "tcbLevels", [])),
    )


def _advisories(raw: Any) -> tuple[str, ...]:
    values = _list(raw, "advisoryIDs", [])
    if not all(isinstance(v, str) for v in values):
        raise _Bad("advisoryIDs must be strings")
    return tuple(values)


def _field(raw: Any, key: str, default: Any = None) -> Any:
    if not isinstance(raw, dict):
        raise _Bad(f"expected an object holding {key!r}")
    if key not in raw:
        if default is not None:
            return default
        raise _Bad(f"missing {key!r}")
    return raw[key]


def _obj(raw: Any, key: str) -> dict[str, Any]:
    value = _field(raw, key)
    if not isinstance(value, dict):
        raise _Bad(f"{key} must be an object")
    return value


def _list(raw: Any, key: str, default: list[Any] | None = None) -> list[Any]:
    value = _field(raw, key, default)
    if not isinstance(value, list):
        raise _Bad(f"{key} must be a list")
    return value


def _str(raw: Any, key: str) -> str:
    value = _field(raw, key)
    if not isinstance(value, str):
        raise _Bad(f"{key} must be a string")
    return value


def _int(raw: Any, key: str) -> int:
    value = _field(raw, key)
    if type(value) is not int or value < 0:
        raise _Bad(f"{key} must be a non-negative integer")
    return value


def _hex(raw: Any, key: str, size: int) -> bytes:
    try:
        value = bytes.fromhex(_str(raw, key))
    except ValueError as exc:
        raise _Bad(f"{key} is not hex") from exc
    if len(value) != size:
        raise _Bad(f"{key} is not {size} bytes")
    return value


def _time(raw: Any, key: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(_str(raw, key).replace("Z", "+00:00"))
    except ValueError as exc:
        raise _Bad(f"{key} is not an ISO-8601 time") from exc
    if moment.tzinfo is None:
        raise _Bad(f"{key} has no time zone")
    return moment
