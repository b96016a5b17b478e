"""The hub's projection: each spoke sees its own samples whole, another region's whole only
while granted, and otherwise what discovery needs; never where a file is or whose it is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.publisher.projection import Change, Projection
from shared.events import (
    AccessDecided,
    AccessRequested,
    AccessRevoked,
    Indexed,
    Region,
    Requester,
    SampleRef,
    SampleStatus,
    Submission,
)
from shared.feed import SampleBody, SampleRecord, SampleSummary, Withdrawal
from tests.ids import issued_id

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OWNER, ASKER = Region.HOVEDSTADEN, Region.SYDDANMARK
REQUEST = "ab" * 16


def indexed(sample: str = "S1", files: int = 3, region: Region = OWNER) -> Indexed:
    return Indexed(
        submission=Submission(
            submission_id=issued_id(sample),
            region=region,
            department="Rigshospitalet",
            sample_id=sample,
            patient_id="P-0001",
            analysis_type="WGS",
            platform="ILLUMINA",
            received_at=datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
        ),
        status=SampleStatus.HARMONISED,
        accepted=True,
        genome_equivalents=Decimal("1.000000"),
        files=files,
    )


def requested() -> AccessRequested:
    return AccessRequested(
        request_id=REQUEST,
        owner=OWNER,
        requester=Requester(region=ASKER, department="Klinisk Genetik, OUH"),
        samples=[SampleRef(region=OWNER, sample_id="S1")],
        wants=["harmonised-cram"],
        purpose="patient-treatment",
        case_reference="case 7",
        urgency="routine",
        requested_at=NOW - timedelta(hours=2),
    )


def granted(days: int = 14) -> AccessDecided:
    return AccessDecided(
        request_id=REQUEST,
        owner=OWNER,
        granted=True,
        decided_by=OWNER,
        decided_at=NOW - timedelta(hours=1),
        valid_until=NOW + timedelta(days=days),
    )


def revoked() -> AccessRevoked:
    return AccessRevoked(
        request_id=REQUEST, owner=OWNER, revoked_by=OWNER, reason="case closed", revoked_at=NOW
    )


def seen_by(changes: list[Change], spoke: Region) -> SampleBody:
    (body,) = [b for s, b in changes if s == spoke]
    return body


def test_the_owner_sees_a_record_and_every_other_spoke_a_summary() -> None:
    changes = Projection().indexed(indexed(), NOW)
    assert {spoke for spoke, _ in changes} == set(Region)
    own = seen_by(changes, OWNER)
    assert isinstance(own, SampleRecord) and own.seen_as == "own" and own.department == "Rigshospitalet"
    other = seen_by(changes, ASKER)
    assert isinstance(other, SampleSummary)
    # Copenhagen's calendar: received 23:30 UTC on 31 January is February's.
    assert other.received_month == "2026-02" and other.files == 3
    dumped = other.model_dump_json()
    assert "P-0001" not in dumped and "Rigshospitalet" not in dumped and "ILLUMINA" not in dumped


def test_a_grant_shows_the_requesters_spoke_the_record_until_it_ends() -> None:
    projection = Projection()
    projection.indexed(indexed(), NOW)
    assert projection.requested(requested(), NOW) == []
    (change,) = projection.decided(granted(), NOW)
    spoke, body = change
    assert spoke == ASKER and isinstance(body, SampleRecord)
    assert body.seen_as == "granted" and body.granted_until == NOW + timedelta(days=14)
    assert "P-0001" not in body.model_dump_json()
    assert projection.expire(NOW + timedelta(days=13)) == []
    ((spoke, body),) = projection.expire(NOW + timedelta(days=14))
    assert spoke == ASKER and isinstance(body, SampleSummary)


def test_a_revocation_takes_the_record_back_and_a_late_decision_does_not_grant_again() -> None:
    projection = Projection()
    projection.indexed(indexed(), NOW)
    projection.requested(requested(), NOW)
    projection.decided(granted(), NOW)
    ((spoke, body),) = projection.revoked(revoked(), NOW)
    assert spoke == ASKER and isinstance(body, SampleSummary)
    assert projection.decided(granted(), NOW) == []  # the decision redelivered after its revocation
    assert isinstance(projection.view("hovedstaden/S1", ASKER, NOW), SampleSummary)


def test_events_of_different_topics_in_any_order_give_the_same_views() -> None:
    early = Projection()
    assert early.decided(granted(), NOW) == []  # before its request
    assert early.indexed(indexed(), NOW)
    ((spoke, body),) = early.requested(requested(), NOW)
    assert spoke == ASKER and isinstance(body, SampleRecord)
    revoked_first = Projection()
    revoked_first.revoked(revoked(), NOW)
    revoked_first.indexed(indexed(), NOW)
    revoked_first.requested(requested(), NOW)
    assert revoked_first.decided(granted(), NOW) == []
    assert isinstance(revoked_first.view("hovedstaden/S1", ASKER, NOW), SampleSummary)


def test_a_correction_updates_and_a_withdrawal_is_signed_on_every_feed() -> None:
    projection = Projection()
    projection.indexed(indexed(files=3), NOW)
    corrected = seen_by(projection.indexed(indexed(files=4), NOW), ASKER)
    assert isinstance(corrected, SampleSummary) and corrected.files == 4
    gone = projection.withdrawn(OWNER, "S1")
    assert {s for s, _ in gone} == set(Region) and all(isinstance(b, Withdrawal) for _, b in gone)
    assert projection.withdrawn(OWNER, "S1") == []
    assert projection.view("hovedstaden/S1", ASKER, NOW) is None
