"""The recall scheduler's estimates follow its own order: drives shared, a started recall
finishing one duration after it started, the waiting ones behind it in the order they get drives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.archive.estimates import expected_staged
from services.archive.placement import RecallFile

NOW = datetime(2026, 12, 3, 8, tzinfo=UTC)
HOUR = timedelta(hours=1)


def recall(
    request: str, path: str, state: str, *, started: datetime | None = None, waited: int = 0
) -> RecallFile:
    return RecallFile(
        request_id=request,
        path=path,
        state=state,
        reason=None,
        attempts=1 if state == "STARTED" else 0,
        not_before=NOW - timedelta(minutes=waited),
        started_at=started,
        finished_at=None,
        pinned_until=None,
        emitted=False,
    )


def test_waiting_files_queue_behind_the_drives_in_the_schedulers_order() -> None:
    files = [
        recall("r1", "hovedstaden/S1/a", "STARTED", started=NOW - 15 * timedelta(minutes=1)),
        recall("r1", "hovedstaden/S1/b", "SUBMITTED", waited=10),
        recall("r2", "hovedstaden/S2/c", "SUBMITTED", waited=20),
        recall("r2", "hovedstaden/S2/d", "SUBMITTED", waited=5),
    ]
    expected = expected_staged(files, drives=2, duration=HOUR, now=NOW)
    assert expected[("r1", "hovedstaden/S1/a")] == NOW + 45 * timedelta(minutes=1)
    assert expected[("r2", "hovedstaden/S2/c")] == NOW + HOUR  # the free drive, longest waiting first
    assert expected[("r1", "hovedstaden/S1/b")] == NOW + 45 * timedelta(minutes=1) + HOUR  # after a
    assert expected[("r2", "hovedstaden/S2/d")] == NOW + 2 * HOUR  # after c


def test_two_requests_for_one_file_share_its_recall() -> None:
    files = [
        recall("r1", "hovedstaden/S1/a", "STARTED", started=NOW),
        recall("r2", "hovedstaden/S1/a", "SUBMITTED"),
        recall("r3", "hovedstaden/S1/b", "SUBMITTED"),
    ]
    expected = expected_staged(files, drives=1, duration=HOUR, now=NOW)
    assert expected[("r1", "hovedstaden/S1/a")] == expected[("r2", "hovedstaden/S1/a")] == NOW + HOUR
    assert expected[("r3", "hovedstaden/S1/b")] == NOW + 2 * HOUR


def test_an_overdue_recall_is_expected_now_and_backoff_delays_a_retry() -> None:
    files = [
        recall("r1", "hovedstaden/S1/a", "STARTED", started=NOW - 2 * HOUR),
        recall("r1", "hovedstaden/S1/b", "SUBMITTED", waited=-90),  # retried: not before 90 minutes
    ]
    expected = expected_staged(files, drives=2, duration=HOUR, now=NOW)
    assert expected[("r1", "hovedstaden/S1/a")] == NOW
    assert expected[("r1", "hovedstaden/S1/b")] == NOW + 90 * timedelta(minutes=1) + HOUR
