"""When an enclave needs the pool's secrets (again), and under which fingerprint (pure)."""

from __future__ import annotations

import pytest

from teeroute_operator.release import (
    Fail,
    Keep,
    Loaded,
    NoSecrets,
    SecretVersion,
    Send,
    Unavailable,
    decide,
    fingerprint,
)

KEY_A, KEY_B = "a" * 64, "b" * 64
VALUE = "sk-live-0123456789"
V1 = (
    SecretVersion("engine-api-key", "provider", "token", "100"),
    SecretVersion("extra", "other", "k", "7"),
)


def loaded(*versions: SecretVersion) -> Loaded:
    return Loaded(versions or V1, {v.name: VALUE for v in versions or V1})


def test_a_pool_without_secrets_sends_nothing_and_records_nothing() -> None:
    assert decide(KEY_A, NoSecrets(), set()) == Keep("")
    assert decide(KEY_A, NoSecrets(), {"stale"}) == Keep("")


def test_a_fresh_enclave_gets_the_secrets() -> None:
    decision = decide(KEY_A, loaded(), set())
    assert isinstance(decision, Send)
    assert decision.fingerprint == fingerprint(KEY_A, V1)
    assert decision.secrets.values == {"engine-api-key": VALUE, "extra": VALUE}


def test_an_enclave_that_has_them_is_left_alone() -> None:
    assert decide(KEY_A, loaded(), {fingerprint(KEY_A, V1)}) == Keep(fingerprint(KEY_A, V1))
    # memory and the recorded annotation may disagree: either knowing it is enough
    assert isinstance(decide(KEY_A, loaded(), {"other", fingerprint(KEY_A, V1)}), Keep)


def test_a_restarted_enclave_has_a_new_key_and_gets_them_again() -> None:
    assert isinstance(decide(KEY_B, loaded(), {fingerprint(KEY_A, V1)}), Send)


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
    decision = decide(KEY_A, loaded(*changed), {fingerprint(KEY_A, V1)})
    assert isinstance(decision, Send)
    assert decision.fingerprint != fingerprint(KEY_A, V1)


def test_the_fingerprint_ignores_the_order_of_the_list() -> None:
    assert fingerprint(KEY_A, V1) == fingerprint(KEY_A, tuple(reversed(V1)))
    assert len(fingerprint(KEY_A, V1)) == 64 and int(fingerprint(KEY_A, V1), 16) >= 0


def test_the_fingerprint_covers_no_value() -> None:
    """Values are not part of it (it is published): only names, Secrets, keys, versions."""
    one = Loaded(V1, {"engine-api-key": "x", "extra": "y"})
    two = Loaded(V1, {"engine-api-key": "p", "extra": "q"})
    assert decide(KEY_A, one, set()) == decide(KEY_A, two, set())  # values never compare


def test_secrets_that_cannot_be_read_fail_the_release_saying_why() -> None:
    reason = 'Secret "provider" not found (secret engine-api-key)'
    assert decide(KEY_A, Unavailable(reason), {fingerprint(KEY_A, V1)}) == Fail(reason)


def test_values_never_print() -> None:
    secrets = loaded()
    for text in (repr(secrets), str(secrets), repr(decide(KEY_A, secrets, set()))):
        assert VALUE not in text
    assert secrets.names == ["engine-api-key", "extra"]
