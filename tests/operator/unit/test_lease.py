"""The attestation lease: renew on verified evidence, end at once on rejected evidence, ride
out unreachability until expiry, pin the chip."""

from __future__ import annotations

import datetime as dt

import pytest

from teeroute import admission
from teeroute_operator.lease import (
    Record,
    Rejected,
    Unreachable,
    Verified,
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
    )


def admitted_record(seconds_left: int = 30, chip: str = CHIP_A) -> Record:
    return Record(
        attested_at=NOW - dt.timedelta(seconds=10),
        expires_at=NOW + dt.timedelta(seconds=seconds_left),
        tee="simulated",
        measurement="m" * 96,
        chip_id=chip,
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
