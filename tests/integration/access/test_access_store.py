"""The access store on SQLite and PostgreSQL: the migration's append-only triggers, the chain
across transactions, the outbox, and a final decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.access.ledger import first_break
from services.access.store import AccessStore, Audit, Conflict, KnownRecall
from shared.events import AccessDecided, AccessRequested, RecallRequested, new_request_id


def _request(now: datetime) -> AccessRequested:
    return AccessRequested(
        request_id=new_request_id(),
        owner="hovedstaden",
        requester={"region": "syddanmark", "department": "OUH"},
        samples=[{"region": "hovedstaden", "sample_id": "RH-1"}],
        wants=["harmonised-vcf"],
        purpose="patient-treatment",
        case_reference="OUH-1",
        urgency="routine",
        requested_at=now,
    )


def test_decisions_and_the_ledger_are_append_only_and_the_chain_holds(access_url: str) -> None:
    store = AccessStore(access_url)
    now = datetime.now(UTC)
    try:
        asked = _request(now)
        store.create_request(
            asked, "ev-1", Audit("syddanmark", "request", ["hovedstaden", "syddanmark"], {}), now
        )
        decided = AccessDecided(
            request_id=asked.request_id,
            owner="hovedstaden",
            granted=True,
            decided_by="hovedstaden",
            decided_at=now,
            valid_until=now + timedelta(days=14),
        )
        store.decide(
            decided, "ev-2", Audit("hovedstaden", "decision", ["hovedstaden"], {"granted": True}), now
        )
        with pytest.raises(Conflict, match="final"):
            store.decide(decided, "ev-3", Audit("hovedstaden", "decision", ["hovedstaden"], {}), now)
        assert [event_id for event_id, _ in store.unemitted()] == ["ev-1", "ev-2"]
        store.mark_emitted("ev-1")
        assert [type(e) for _, e in store.unemitted()] == [AccessDecided]
        entries = store.entries()
        assert [e.seq for e in entries] == [1, 2] and first_break(entries) is None
        assert store.head() == (2, entries[-1].sha256)
        for statement in (
            "UPDATE access_ledger SET actor = 'ngc' WHERE seq = 1",
            "DELETE FROM access_ledger WHERE seq = 2",
            "UPDATE access_decisions SET granted = false",
            "DELETE FROM access_decisions",
        ):
            with pytest.raises(DBAPIError, match="append-only"), store.writing() as conn:
                conn.execute(text(statement))
        record = store.record(asked.request_id)
        assert record is not None and record.standing(now + timedelta(days=1)).value == "granted"
    finally:
        store.dispose()


def test_a_files_recall_is_joined_while_under_way_and_replaced_once_it_ended(access_url: str) -> None:
    """What a DRS request for a cold file waits for: the recall under way (anyone's), a new one
    only after the last ended; the archive's word on an older recall changes nothing."""
    store = AccessStore(access_url)
    try:
        now = datetime(2026, 12, 3, 8, tzinfo=UTC)
        path = "hovedstaden/RH-9/RH-9.cram"
        event = RecallRequested(
            recall_id="1" * 32,
            region="hovedstaden",
            sample_id="RH-9",
            paths=[path],
            requested_by="access: a working copy",
            requested_at=now,
        )
        first = KnownRecall(path, "1" * 32, "SUBMITTED", None, None, now)
        assert store.ask_recall(first, event, "e-recall-1") == first
        second = KnownRecall(path, "2" * 32, "SUBMITTED", None, None, now)
        assert store.ask_recall(second, event, "e-recall-2") == first  # joined: nothing queued
        assert [e.event_name for _, e in store.unemitted()] == ["recall-requested"]
        estimate = now + timedelta(minutes=30)
        assert store.project_recall(KnownRecall(path, "1" * 32, "STARTED", estimate, None, now))
        assert not store.project_recall(KnownRecall(path, "3" * 32, "STARTED", estimate, None, now))
        staged = KnownRecall(path, "1" * 32, "COMPLETED", None, now + timedelta(hours=72), now)
        assert store.project_recall(staged) and store.recall_of(path) == staged
        assert (
            store.ask_recall(second, event.model_copy(update={"recall_id": "2" * 32}), "e-recall-2") == second
        )
        assert len(store.unemitted()) == 2
    finally:
        store.dispose()
