"""The access store on SQLite and PostgreSQL: the migration's append-only triggers, the chain
across transactions, the outbox, and a final decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.access.ledger import first_break
from services.access.store import AccessStore, Audit, Conflict
from shared.events import AccessDecided, AccessRequested, new_request_id


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
