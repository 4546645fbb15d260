"""Signed secret releases (docs/sealed-mode.md, section 4): only the pinned release key's
signature, for this enclave key and pool, opens; every field is covered by the signature."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.attestation.policy import Challenge, bind
from teeroute.sealing import envelope, hpke, secrets
from teeroute.sealing.errors import EnvelopeInvalid, ReleaseInvalid

POOL = "team-a/relay"
OPERATOR_KEY = ed25519.Ed25519PrivateKey.generate()
OPERATOR = secrets.Signer.from_private(OPERATOR_KEY)
PRIVATE, PUBLIC = hpke.generate_key_pair()


def open_(raw: bytes, pinned: bytes = OPERATOR.public) -> secrets.Release:
    return secrets.open_secrets(raw, PRIVATE, PUBLIC, pinned, pool=POOL)


def reseal(doc: dict[str, Any], meta_pool: str = POOL) -> bytes:
    """`doc` as the plaintext of a release, sealed as is (no new signature)."""
    meta = {"path": secrets.PATH, "pool": meta_pool}
    sealed, _ = envelope.seal_request(PUBLIC, meta, envelope.canonical(doc))
    return sealed.to_bytes()


def signed_doc(**changes: Any) -> dict[str, Any]:
    raw = secrets.seal_secrets(PUBLIC, POOL, {"engine-api-key": "sk-1"}, OPERATOR, 7)
    body, _ = envelope.open_request(envelope.SealedRequest.parse(raw), PRIVATE, PUBLIC)
    doc: dict[str, Any] = json.loads(body)
    return {**doc, **changes}


def test_a_release_signed_by_the_pinned_key_opens() -> None:
    raw = secrets.seal_secrets(PUBLIC, POOL, {"engine-api-key": "sk-1", "a": "b"}, OPERATOR, 42)
    release = open_(raw)
    assert (release.pool, release.secrets, release.issued_ns) == (
        POOL,
        {"engine-api-key": "sk-1", "a": "b"},
        42,
    )
    assert "sk-1" not in repr(release)


def test_a_release_signed_by_another_key_is_refused() -> None:
    stranger = secrets.Signer.from_private(ed25519.Ed25519PrivateKey.generate())
    raw = secrets.seal_secrets(PUBLIC, POOL, {"a": "b"}, stranger, 1)
    with pytest.raises(ReleaseInvalid) as refused:
        open_(raw)
    assert refused.value.check == "release.key"


def test_a_signer_naming_the_pinned_key_without_holding_it_is_refused() -> None:
    forger = ed25519.Ed25519PrivateKey.generate()
    liar = secrets.Signer(OPERATOR.public, forger.sign)
    with pytest.raises(ReleaseInvalid) as refused:
        open_(secrets.seal_secrets(PUBLIC, POOL, {"a": "b"}, liar, 1))
    assert refused.value.check == "release.signature"


@pytest.mark.parametrize(
    "changes",
    [
        {"pool": "team-b/other"},
        {"issued_ns": 8},
        {"secrets": {"engine-api-key": "sk-attacker"}},
        {"key_id": "0" * 64},
    ],
)
def test_every_signed_field_is_covered(changes: dict[str, Any]) -> None:
    meta_pool = changes.get("pool", POOL)
    with pytest.raises(ReleaseInvalid) as refused:
        open_(reseal(signed_doc(**changes), meta_pool))
    assert refused.value.check == "release.signature"


def test_a_release_signed_for_another_enclave_key_is_refused() -> None:
    _, other = hpke.generate_key_pair()
    doc = signed_doc(key_id=envelope.key_id(other))
    doc["signature"] = envelope.b64(OPERATOR_KEY.sign(secrets._signed(doc)))
    with pytest.raises(ReleaseInvalid) as refused:
        open_(reseal(doc))
    assert refused.value.check == "release.key_id"


def test_meta_pool_must_be_the_signed_pool() -> None:
    with pytest.raises(ReleaseInvalid) as refused:
        open_(reseal(signed_doc(), meta_pool="team-b/other"))
    assert refused.value.check == "release.pool"


@pytest.mark.parametrize(
    "doc",
    [
        {"secrets": {"a": "b"}},  # the unsigned form
        signed_doc(extra=1),
        signed_doc(issued_ns=-1),
        signed_doc(issued_ns="7"),
        signed_doc(secrets={"a": 1}),
        signed_doc(v="v2"),
    ],
)
def test_malformed_releases_are_envelope_errors(doc: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeInvalid):
        open_(reseal(doc))


def test_the_release_key_changes_report_data() -> None:
    nonce, hpke_public, signing = b"n" * 32, b"h" * 32, b"s" * 32
    without = Challenge(nonce, None, hpke_public, signing)
    with_key = Challenge(nonce, None, hpke_public, signing, OPERATOR.public)
    assert without.report_data == bind(nonce, hpke_public, signing)
    assert with_key.report_data == bind(nonce, hpke_public, signing, OPERATOR.public)
    assert with_key.report_data != without.report_data


@pytest.mark.parametrize(
    ("served", "detail"),
    [
        ("team-b/relay", "released for 'team-a/relay'; this enclave serves 'team-b/relay'"),
        ("", "released for 'team-a/relay'; this enclave serves no pool"),
    ],
)
def test_a_release_for_another_pool_is_refused(served: str, detail: str) -> None:
    raw = secrets.seal_secrets(PUBLIC, POOL, {"engine-api-key": "sk-1"}, OPERATOR, 1)
    with pytest.raises(ReleaseInvalid) as refused:
        secrets.open_secrets(raw, PRIVATE, PUBLIC, OPERATOR.public, pool=served)
    assert (refused.value.check, refused.value.detail) == ("pool.binding", detail)


def test_the_pool_changes_report_data_and_every_part_is_framed() -> None:
    nonce, hpke_public, signing = b"n" * 32, b"h" * 32, b"s" * 32
    unbound = Challenge(nonce, None, hpke_public, signing, OPERATOR.public)
    bound = Challenge(nonce, None, hpke_public, signing, OPERATOR.public, POOL)
    other = Challenge(nonce, None, hpke_public, signing, OPERATOR.public, "team-b/relay")
    assert bound.report_data == bind(nonce, hpke_public, signing, OPERATOR.public, POOL)
    assert len({unbound.report_data, bound.report_data, other.report_data}) == 3
    # The same bytes as the release key or as the pool: without the lengths, one binding.
    assert bind(nonce, hpke_public, signing, b"a" * 32) != bind(
        nonce, hpke_public, signing, b"", "a" * 32
    )
