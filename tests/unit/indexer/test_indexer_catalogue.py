"""The catalogue's fold: order- and duplicate-independent, and what each event contributes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.indexer.catalogue import (
    HARMONISED_ROLE,
    SubmissionOutcome,
    current_submission,
    fold,
    internal_location,
    trace_id_of,
)
from services.indexer.filters import Cursor, InvalidQuery, SampleFilters, StatsFilters, parse_query
from shared.events import Region, SampleStatus, Verdict, ge_to_micro, micro_to_ge, month_of
from tests.unit.indexer.factories import T0, event, harmonised, submission, validated


def test_rejection_is_indexed_with_its_files_and_problems() -> None:
    record = fold([event(validated(submission(), "rejected"))])
    assert record.status is SampleStatus.REJECTED
    assert record.verdict is Verdict.REJECTED
    assert record.accepted is False
    assert len(record.files) == 2
    r1 = record.files[("raw_reads", "R1.fastq.gz")]
    assert [(p["code"], p["message"]) for p in r1.problems] == [("fastq.truncated", "gzip stream ends early")]
    indexed = record.indexed_event()
    assert (indexed.status, indexed.accepted, indexed.files) == (SampleStatus.REJECTED, False, 2)


def test_harmonised_adds_outputs_and_provenance_and_starts_hot() -> None:
    record = fold([event(harmonised(submission()))])
    assert record.status is SampleStatus.HARMONISED
    assert record.accepted is True
    assert sorted(role for role, _ in record.files) == ["harmonised", "harmonised", "raw_reads", "raw_reads"]
    assert record.pipeline == "nf-core/sarek"
    assert record.indexed_event().genome_equivalents == Decimal("0.001613")
    assert record.indexed_event().files == 4


def test_failed_harmonisation_is_its_own_status() -> None:
    record = fold([event(harmonised(submission(), "failed"))])
    assert record.status is SampleStatus.HARMONISATION_FAILED
    assert record.accepted is True
    assert not [k for k in record.files if k[0] == HARMONISED_ROLE]


def test_accepted_qc_alone_is_not_an_outcome() -> None:
    record = fold([event(validated(submission(), "accepted"))])
    assert not record.indexed
    assert record.files == {}
    with pytest.raises(ValueError, match="no outcome"):
        record.indexed_event()


def test_fold_ignores_delivery_order_and_duplicates() -> None:
    sub = submission()
    events = [
        event(validated(sub, "accepted"), 0),
        event(harmonised(sub, "failed"), 10),
        event(harmonised(sub, "succeeded"), 20),
    ]
    expected = fold(events)
    assert expected.status is SampleStatus.HARMONISED
    assert expected.reference_profile == "synthetic-v1"  # only QC carries it: the late event completes it
    for order in itertools.permutations([*events, events[1]]):
        assert fold(order) == expected


def test_harmonised_before_qc_keeps_its_outcome_and_is_completed_later() -> None:
    sub = submission()
    qc, done = event(validated(sub, "accepted"), 0), event(harmonised(sub), 10)
    alone = fold([done])
    assert alone.status is SampleStatus.HARMONISED and alone.raw_reads is None
    both = fold([done, qc])
    assert both.status is SampleStatus.HARMONISED and both.raw_reads == 2000


def test_fold_refuses_mixed_submissions_and_nothing() -> None:
    with pytest.raises(ValueError, match="several submissions"):
        fold([event(harmonised(submission(1))), event(harmonised(submission(2)))])
    with pytest.raises(ValueError, match="at least one"):
        fold([])


def test_current_submission_is_newest_received_with_an_outcome() -> None:
    old = SubmissionOutcome("a", T0, "rejected")
    new = SubmissionOutcome("b", T0 + timedelta(days=1), "harmonised")
    pending = SubmissionOutcome("c", T0 + timedelta(days=2), None)
    assert current_submission([new, pending, old]) == new
    assert current_submission([pending]) is None


def test_locations_lose_credentials_and_signatures() -> None:
    assert (
        internal_location("s3://user:secret@bucket:9000/a/b.cram?X-Amz-Signature=1#x")
        == "s3://bucket:9000/a/b.cram"
    )
    assert internal_location("file:///archive/x.fastq.gz") == "file:///archive/x.fastq.gz"
    record = fold([event(harmonised(submission()))])
    assert all("secret" not in f.url and "?" not in f.url for f in record.files.values())


def test_month_is_copenhagen_calendar_and_ge_is_exact() -> None:
    assert month_of(T0) == "2026-02"
    assert month_of(datetime(2026, 6, 30, 21, 59, tzinfo=UTC)) == "2026-06"
    assert month_of(datetime(2026, 6, 30, 22, 0, tzinfo=UTC)) == "2026-07"
    assert micro_to_ge(ge_to_micro(Decimal("2016.000001"))) == Decimal("2016.000001")


def test_trace_id_comes_from_traceparent() -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of([("traceparent", f"00-{tid}-00f067aa0ba902b7-01".encode())]) == tid
    assert trace_id_of([("traceparent", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01")]) is None
    assert trace_id_of([("traceparent", b"garbage")]) is None
    assert trace_id_of([]) is None


def test_filters_refuse_unknown_and_bad_values() -> None:
    with pytest.raises(InvalidQuery) as err:
        parse_query(SampleFilters, {"regoin": "hovedstaden", "status": "lost", "limit": "0"}, set())
    found = {p["parameter"]: p["message"] for p in err.value.problems}
    assert found["regoin"] == "unknown parameter"
    assert set(found) == {"regoin", "status", "limit"}
    with pytest.raises(InvalidQuery, match="received_from"):
        parse_query(SampleFilters, {"received_from": "2026-1-5"}, set())
    with pytest.raises(InvalidQuery, match="before received_from"):
        parse_query(SampleFilters, {"received_from": "2026-02-01", "received_to": "2026-01-01"}, set())
    with pytest.raises(InvalidQuery, match="cursor"):
        parse_query(SampleFilters, {"cursor": "bm90IGEgY3Vyc29y"}, set())
    with pytest.raises(InvalidQuery, match="more than once"):
        parse_query(SampleFilters, {"status": "rejected"}, {"status"})
    with pytest.raises(InvalidQuery, match="unknown parameter"):
        parse_query(StatsFilters, {"month": "2026-01"}, set())


def test_day_bounds_are_copenhagen_days() -> None:
    f = parse_query(SampleFilters, {"received_from": "2026-02-01", "received_to": "2026-02-01"}, set())
    assert f.received_since == datetime(2026, 1, 31, 23, tzinfo=UTC)
    assert f.received_before == datetime(2026, 2, 1, 23, tzinfo=UTC)


def test_cursor_round_trip() -> None:
    c = Cursor(T0, Region.HOVEDSTADEN, "S-0001")
    assert Cursor.decode(c.encode()) == c
    assert parse_query(SampleFilters, {"cursor": c.encode()}, set()).after == c
