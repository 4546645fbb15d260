"""When an enclave needs the pool's secrets (again), and under which fingerprint (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.sealing.secrets import Signer
from teeroute_operator.release import (
    NO_RELEASE_KEY,
    Decision,
    Fail,
    Keep,
    Loaded,
    NoSecrets,
    SecretSet,
    SecretVersion,
    Send,
    Unavailable,
    decide,
    fingerprint,
    opt_in_problem,
    pin_problem,
    pinning_problem,
)

KEY_A, KEY_B = "a" * 64, "b" * 64
VALUE = "sk-live-0123456789"
V1 = (
    SecretVersion("engine-api-key", "provider", "token", "100"),
    SecretVersion("extra", "other", "k", "7"),
)


OURS = Signer.from_private(ed25519.Ed25519PrivateKey.generate())
OTHER = Signer.from_private(ed25519.Ed25519PrivateKey.generate())


def ours(hpke_key: str, secrets: SecretSet, released: Collection[str]) -> Decision:
    """The decision for an enclave that pins the operator's release key."""
    return decide(hpke_key, secrets, released, signer=OURS, pinned=OURS.public)


def loaded(*versions: SecretVersion) -> Loaded:
    return Loaded(versions or V1, {v.name: VALUE for v in versions or V1})


def test_a_pool_without_secrets_sends_nothing_and_records_nothing() -> None:
    assert ours(KEY_A, NoSecrets(), set()) == Keep("")
    assert ours(KEY_A, NoSecrets(), {"stale"}) == Keep("")


def test_a_fresh_enclave_gets_the_secrets() -> None:
    decision = ours(KEY_A, loaded(), set())
    assert isinstance(decision, Send)
    assert decision.fingerprint == fingerprint(KEY_A, V1)
    assert decision.secrets.values == {"engine-api-key": VALUE, "extra": VALUE}


def test_an_enclave_that_has_them_is_left_alone() -> None:
    assert ours(KEY_A, loaded(), {fingerprint(KEY_A, V1)}) == Keep(fingerprint(KEY_A, V1))
    # memory and the recorded annotation may disagree: either knowing it is enough
    assert isinstance(ours(KEY_A, loaded(), {"other", fingerprint(KEY_A, V1)}), Keep)


def test_a_restarted_enclave_has_a_new_key_and_gets_them_again() -> None:
    assert isinstance(ours(KEY_B, loaded(), {fingerprint(KEY_A, V1)}), Send)


@pytest.mark.parametrize(
    "changed",
    [
        (SecretVersion("engine-api-key", "provider", "token", "101"), V1[1]),  # rotated
        (SecretVersion("engine-api-key", "provider", "other-key", "100"), V1[1]),  # another key
        (SecretVersion("engine-api-key", "elsewhere", "token", "100"), V1[1]),  # another Secret
        (V1[0],),  # one secret fewer
        (*V1, SecretVersion("third", "s", "k", "1")),  # one more
        (SecretVersion("renamed", "provider", "token", "100"), V1[1]),
    ],
    ids=["resource-version", "key", "secret", "fewer", "more", "renamed"],
)
def test_any_change_to_the_set_sends_again(changed: tuple[SecretVersion, ...]) -> None:
    decision = ours(KEY_A, loaded(*changed), {fingerprint(KEY_A, V1)})
    assert isinstance(decision, Send)
    assert decision.fingerprint != fingerprint(KEY_A, V1)


def test_the_fingerprint_ignores_the_order_of_the_list() -> None:
    assert fingerprint(KEY_A, V1) == fingerprint(KEY_A, tuple(reversed(V1)))
    assert len(fingerprint(KEY_A, V1)) == 64 and int(fingerprint(KEY_A, V1), 16) >= 0


def test_the_fingerprint_covers_no_value() -> None:
    """Values are not part of it (it is published): only names, Secrets, keys, versions."""
    one = Loaded(V1, {"engine-api-key": "x", "extra": "y"})
    two = Loaded(V1, {"engine-api-key": "p", "extra": "q"})
    assert ours(KEY_A, one, set()) == ours(KEY_A, two, set())  # values never compare


def test_secrets_that_cannot_be_read_fail_the_release_saying_why() -> None:
    reason = 'Secret "provider" not found (secret engine-api-key)'
    assert ours(KEY_A, Unavailable(reason), {fingerprint(KEY_A, V1)}) == Fail(reason)


def test_values_never_print() -> None:
    secrets = loaded()
    for text in (repr(secrets), str(secrets), repr(ours(KEY_A, secrets, set()))):
        assert VALUE not in text
    assert secrets.names == ["engine-api-key", "extra"]


def test_a_fresh_enclave_pinning_our_key_gets_them_signed_by_it() -> None:
    decision = decide(KEY_A, loaded(), set(), signer=OURS, pinned=OURS.public)
    assert isinstance(decision, Send) and decision.signer is OURS
    assert pin_problem(OURS.public, OURS.public) is None


@pytest.mark.parametrize(
    ("known", "secrets"),
    [(set(), loaded()), ({fingerprint(KEY_A, V1)}, loaded()), (set(), Unavailable("gone"))],
    ids=["fresh", "released-before", "unreadable"],
)
def test_an_enclave_pinning_another_key_gets_nothing(known: set[str], secrets: SecretSet) -> None:
    decision = decide(KEY_A, secrets, known, signer=OURS, pinned=OTHER.public)
    assert isinstance(decision, Fail)
    assert decision.reason.startswith("the enclave pins another release key (SHA-256 ")
    assert hashlib.sha256(OTHER.public).hexdigest()[:16] in decision.reason
    assert hashlib.sha256(OURS.public).hexdigest()[:16] in decision.reason


def test_an_enclave_pinning_no_key_gets_nothing() -> None:
    decision = decide(KEY_A, loaded(), set(), signer=OURS, pinned=b"")
    assert decision == Fail(
        "the enclave pins no release key (its agent lacks TEEROUTE_AGENT_RELEASE_KEY)"
    )


@pytest.mark.parametrize("pinned", [b"", OTHER.public], ids=["pins-none", "pins-one"])
def test_an_operator_without_a_release_key_releases_nothing(pinned: bytes) -> None:
    decision = decide(KEY_A, loaded(), set(), signer=None, pinned=pinned)
    assert decision == Fail(NO_RELEASE_KEY)
    assert "TEEROUTE_OPERATOR_RELEASE_KEY_FILE" in NO_RELEASE_KEY


@pytest.mark.parametrize("signer", [None, OURS], ids=["no-key", "key"])
@pytest.mark.parametrize("pinned", [b"", OTHER.public], ids=["pins-none", "pins-other"])
def test_a_pool_without_secrets_needs_no_release_key(signer: Signer | None, pinned: bytes) -> None:
    assert decide(KEY_A, NoSecrets(), set(), signer=signer, pinned=pinned) == Keep("")


# Consent before release (issue 14, hole 7): the pool pins its enclaves' code, and each
# Secret names the pool it is offered to.


@pytest.mark.parametrize(
    ("allowed", "ok"),
    [([], False), (["ab" * 48], True), (["ab" * 48, "cd" * 48], True)],
)
def test_secrets_go_only_to_a_pool_that_pins_measurements(allowed: list[str], ok: bool) -> None:
    problem = pinning_problem(allowed)
    assert (problem is None) is ok
    if problem is not None:
        assert problem.startswith("secrets.measurementsPinned: ")


@pytest.mark.parametrize(
    ("annotations", "ok"),
    [
        (None, False),
        ({}, False),
        ({"teeroute.dev/release-to": ""}, False),
        ({"teeroute.dev/release-to": "relay"}, True),
        ({"teeroute.dev/release-to": "other, relay"}, True),
        ({"teeroute.dev/release-to": "relay-2"}, False),  # names, not prefixes
        ({"teeroute.dev/release-to": "*"}, False),  # no wildcard
        ({"teeroute.dev/release-to": "ns/relay"}, False),  # the Secret's own namespace only
        ({"teeroute.dev/pool": "relay"}, False),  # another annotation
    ],
)
def test_a_secret_goes_only_to_the_pools_it_names(
    annotations: dict[str, str] | None, ok: bool
) -> None:
    problem = opt_in_problem("provider", annotations, "relay")
    assert (problem is None) is ok
    if problem is not None:
        assert problem == (
            'secrets.optIn: Secret "provider" does not name pool "relay" in its '
            "teeroute.dev/release-to annotation"
        )
