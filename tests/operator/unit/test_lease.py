"""The attestation lease: renew on verified evidence, end at once on rejected evidence, ride
out unreachability until expiry, pin the chip."""

from __future__ import annotations

import datetime as dt

import pytest

from teeroute import admission
from teeroute_operator.lease import (
    Record,
    Rejected,
    ReleaseFailed,
    Unreachable,
    Verified,
    chip_blocked,
    next_record,
)

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
AGE = dt.timedelta(seconds=60)
CHIP_A, CHIP_B = "a" * 128, "b" * 128


def verified(chip: str = CHIP_A, issued_s_ago: int = 1) -> Verified:
    return Verified(
        issued_at=NOW - dt.timedelta(seconds=issued_s_ago),
        tee="simulated",
        measurement="m" * 96,
        chip_id=chip,
        hpke_key="h" * 64,
        signing_key="s" * 64,
        hpke_public_key=HPKE_PUBLIC,
        signing_public_key=SIGNING_PUBLIC,
    )


HPKE_PUBLIC, SIGNING_PUBLIC = "SFBLRQ" + "A" * 38, "U0lHTg" + "A" * 38


def admitted_record(seconds_left: int = 30, chip: str = CHIP_A) -> Record:
    return Record(
        attested_at=NOW - dt.timedelta(seconds=10),
        expires_at=NOW + dt.timedelta(seconds=seconds_left),
        tee="simulated",
        measurement="m" * 96,
        chip_id=chip,
        hpke_key="h" * 64,
        signing_key="s" * 64,
        hpke_public_key=HPKE_PUBLIC,
        signing_public_key=SIGNING_PUBLIC,
        secrets_released="f" * 64,
    )


def test_first_verified_evidence_admits_until_issue_time_plus_max_age() -> None:
    t = next_record(Record(), verified(issued_s_ago=2), now=NOW, max_age=AGE)
    assert t.record.admitted(NOW)
    assert t.record.expires_at == NOW - dt.timedelta(seconds=2) + AGE
    assert t.record.chip_id == CHIP_A and t.record.failure == ""
    assert t.event is not None and t.event[:2] == ("Normal", "Attested")


def test_renewal_of_an_admitted_endpoint_is_quiet() -> None:
    t = next_record(admitted_record(), verified(), now=NOW, max_age=AGE)
    assert t.record.admitted(NOW) and t.event is None


def test_rejected_evidence_ends_the_lease_at_once_and_says_why() -> None:
    t = next_record(admitted_record(), Rejected("sim.measurement failed"), now=NOW, max_age=AGE)
    assert not t.record.admitted(NOW)
    assert t.record.failure == "rejected: sim.measurement failed"
    assert t.event == ("Warning", "AttestationFailed", "sim.measurement failed")
    again = next_record(t.record, Rejected("sim.measurement failed"), now=NOW, max_age=AGE)
    assert again.event is None  # no Event storm while it keeps failing the same way


def test_unreachable_keeps_the_last_good_verdict_until_it_expires() -> None:
    t = next_record(admitted_record(30), Unreachable("timed out"), now=NOW, max_age=AGE)
    assert t.record.admitted(NOW) and t.event is None
    assert t.record.failure == "unreachable: timed out"
    later = NOW + dt.timedelta(seconds=31)
    gone = next_record(t.record, Unreachable("timed out"), now=later, max_age=AGE)
    assert not gone.record.admitted(later)
    assert gone.event is not None and gone.event[1] == "AttestationExpired"


def test_unreachable_never_admits_what_was_not_admitted() -> None:
    t = next_record(Record(), Unreachable("connection failed"), now=NOW, max_age=AGE)
    assert not t.record.admitted(NOW)


def test_a_different_chip_is_flagged_and_not_admitted_until_readmitted() -> None:
    t = next_record(admitted_record(chip=CHIP_A), verified(chip=CHIP_B), now=NOW, max_age=AGE)
    assert not t.record.admitted(NOW)
    assert t.record.chip_id == CHIP_A  # the pinned chip stays
    assert t.record.chip_changed
    assert t.event is not None and t.event[1] == "ChipChanged"
    assert CHIP_B in t.event[2] and admission.READMIT in t.event[2]
    # Still the other chip at the next sweep: still out, no second Event.
    again = next_record(t.record, verified(chip=CHIP_B), now=NOW, max_age=AGE)
    assert not again.record.admitted(NOW) and again.event is None
    readmitted = next_record(
        again.record, verified(chip=CHIP_B), now=NOW, max_age=AGE, readmit_chip=CHIP_B
    )
    assert readmitted.record.admitted(NOW) and readmitted.record.chip_id == CHIP_B
    assert readmitted.record.chip_changed == ""


def test_readmission_names_one_chip_only() -> None:
    t = next_record(
        admitted_record(chip=CHIP_A),
        verified(chip=CHIP_B),
        now=NOW,
        max_age=AGE,
        readmit_chip="c" * 128,
    )
    assert not t.record.admitted(NOW)


@pytest.mark.parametrize(
    "record",
    [
        Record(),
        admitted_record(),
        Record(failure="rejected: x", chip_changed="a -> b", chip_id=CHIP_A),
    ],
)
def test_records_round_trip_through_annotations(record: Record) -> None:
    patch = record.to_annotations()
    stored = {k: v for k, v in patch.items() if v is not None}
    assert Record.from_annotations(stored) == record


def test_empty_fields_are_removed_from_the_pod() -> None:
    patch = Record(failure="rejected: x").to_annotations()
    assert patch[admission.FAILURE] == "rejected: x"
    assert patch[admission.EXPIRES_AT] is None  # merge patch null: the annotation goes


def test_an_unreadable_expiry_admits_nothing() -> None:
    record = Record.from_annotations({admission.EXPIRES_AT: "tomorrow"})
    assert not record.admitted(NOW)


@pytest.mark.parametrize(
    "record",
    [Record(), admitted_record(), Record(failure="unreachable: timed out", chip_id=CHIP_A)],
)
def test_records_round_trip_through_an_external_status_entry(record: Record) -> None:
    entry = record.to_status("miner-1", "https://miner-1.example:8443")
    assert (entry["name"], entry["url"]) == ("miner-1", "https://miner-1.example:8443")
    assert Record.from_status(entry) == record


def test_verified_evidence_publishes_the_raw_keys_and_keeps_the_released_fingerprint() -> None:
    t = next_record(admitted_record(), verified(), now=NOW, max_age=AGE)
    assert (t.record.hpke_public_key, t.record.signing_public_key) == (HPKE_PUBLIC, SIGNING_PUBLIC)
    assert t.record.secrets_released == "f" * 64  # the sweeper overwrites it when it releases
    notes = t.record.to_annotations()
    assert notes[admission.HPKE_PUBLIC_KEY] == HPKE_PUBLIC
    assert notes[admission.SIGNING_PUBLIC_KEY] == SIGNING_PUBLIC
    assert notes[admission.SECRETS_RELEASED] == "f" * 64
    entry = t.record.to_status("m1", "https://m1")
    assert (entry["hpkePublicKey"], entry["signingPublicKey"]) == (HPKE_PUBLIC, SIGNING_PUBLIC)
    assert entry["secretsReleased"] == "f" * 64


def test_the_raw_keys_are_cleared_where_the_hashes_are() -> None:
    """Keys go wherever the fingerprints go: a record without them removes both."""
    patch = Record(failure="rejected: x").to_annotations()
    for key in (
        admission.HPKE_KEY,
        admission.SIGNING_KEY,
        admission.HPKE_PUBLIC_KEY,
        admission.SIGNING_PUBLIC_KEY,
        admission.SECRETS_RELEASED,
    ):
        assert patch[key] is None
    assert set(patch) <= set(admission.VERDICT_ANNOTATIONS)


def test_a_failed_release_keeps_a_new_enclave_out_and_says_which_check() -> None:
    failed = ReleaseFailed("the agent answered HTTP 404", "h" * 64)
    fresh = next_record(Record(), failed, now=NOW, max_age=AGE)
    assert not fresh.record.admitted(NOW)
    assert fresh.record.failure == "secrets.release: the agent answered HTTP 404"
    assert fresh.event == ("Warning", "SecretReleaseFailed", "the agent answered HTTP 404")
    again = next_record(fresh.record, failed, now=NOW, max_age=AGE)
    assert again.event is None and not again.record.admitted(NOW)


def test_a_restarted_enclave_without_its_secrets_loses_the_old_lease_at_once() -> None:
    t = next_record(admitted_record(), ReleaseFailed("timed out", "n" * 64), now=NOW, max_age=AGE)
    assert not t.record.admitted(NOW)


def test_the_enclave_holding_the_lease_keeps_it_unrenewed_until_it_runs_out() -> None:
    held = admitted_record(seconds_left=20)
    t = next_record(held, ReleaseFailed("rotation failed", "h" * 64), now=NOW, max_age=AGE)
    assert t.record.admitted(NOW) and t.record.expires_at == held.expires_at
    later = NOW + dt.timedelta(seconds=21)
    gone = next_record(t.record, ReleaseFailed("rotation failed", "h" * 64), now=later, max_age=AGE)
    assert not gone.record.admitted(later) and gone.record.expires_at is None


def test_release_is_only_for_an_enclave_the_lease_would_admit() -> None:
    assert not chip_blocked(Record(), verified(chip=CHIP_B))
    assert not chip_blocked(admitted_record(chip=CHIP_A), verified(chip=CHIP_A))
    assert chip_blocked(admitted_record(chip=CHIP_A), verified(chip=CHIP_B))
    assert not chip_blocked(admitted_record(chip=CHIP_A), verified(chip=CHIP_B), CHIP_B)
