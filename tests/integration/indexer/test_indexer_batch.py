"""The indexer's batch upsert (a poll batch in one transaction) against one event at a time,
on real SQLite and PostgreSQL: the same catalogue, and a replay that changes nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.indexer.catalogue import CatalogueEvent
from services.indexer.store import Catalogue
from tests.unit.indexer.factories import T0, event, harmonised, submission, validated


def log() -> list[CatalogueEvent]:
    """Validations and outcomes of several submissions, interleaved as two topics deliver
    them: rejections, harmonisations, one sample submitted again, one pseudonym in two
    regions, and one event delivered twice."""
    events: list[CatalogueEvent] = []
    for n in range(1, 9):
        sub = submission(n)
        if n % 3 == 0:
            events.append(event(validated(sub, "rejected"), n))
        else:
            events.append(event(validated(sub, "accepted"), n))
            events.append(event(harmonised(sub), n + 0.5))
    again = submission(20, sample="S-0001", received_at=T0 + timedelta(days=1))
    events.append(event(validated(again, "accepted"), 86400))
    events.append(event(harmonised(again), 86401))
    events.append(event(validated(submission(30, sample="S-0002", region="sjaelland"), "rejected"), 5))
    events.append(events[3])  # a redelivery
    return events


def apply_in_batches(catalogue: Catalogue, events: list[CatalogueEvent], size: int) -> list[bool]:
    new: list[bool] = []
    for start in range(0, len(events), size):
        new += [applied.new for applied in catalogue.apply_all(events[start : start + size])]
    return new


def test_a_batch_indexes_as_one_by_one_would(catalogue: Catalogue, tmp_path: Path) -> None:
    one_by_one = Catalogue(f"sqlite:///{tmp_path / 'one-by-one.sqlite'}")
    one_by_one.migrate()
    try:
        events = log()
        expected = [one_by_one.apply(e).new for e in events]
        assert apply_in_batches(catalogue, events, 4) == expected
        assert expected[-1] is False  # the redelivery
        assert catalogue.dump() == one_by_one.dump()
    finally:
        one_by_one.close()


def test_each_event_of_a_batch_returns_its_submission_after_the_batch(catalogue: Catalogue) -> None:
    sub = submission(1)
    applied = catalogue.apply_all([event(validated(sub, "accepted"), 0), event(harmonised(sub), 1)])
    assert [a.new for a in applied] == [True, True]
    assert applied[0].record == applied[1].record
    assert applied[1].record.status is not None and applied[1].record.status.value == "harmonised"


def test_an_event_twice_in_one_batch_is_new_once(catalogue: Catalogue) -> None:
    first = event(validated(submission(1), "rejected"), 0)
    assert [a.new for a in catalogue.apply_all([first, first])] == [True, False]


def test_replaying_the_log_in_batches_changes_nothing(catalogue: Catalogue) -> None:
    events = log()
    apply_in_batches(catalogue, events, 5)
    before = catalogue.dump()
    assert apply_in_batches(catalogue, events, 3) == [False] * len(events)
    assert catalogue.dump() == before


def test_an_empty_batch_is_nothing(catalogue: Catalogue) -> None:
    assert catalogue.apply_all([]) == []
    assert catalogue.dump()["catalogue_events"] == []
