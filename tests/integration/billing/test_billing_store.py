"""Accruals, the grant ledger and month closes on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from services.billing.accrual import InconsistentEvent, Outcome, accrual_of
from services.billing.money import MICRO
from services.billing.store import BillingStore, CloseRefused, LedgerKind
from shared.events import AnalysisType, Indexed, Region, SampleStatus
from tests.unit.billing.billing_factories import indexed

FEB = datetime(2026, 2, 10, tzinfo=UTC)
RATE = 300


def accrue(store: BillingStore, event: Indexed, event_id: str = "e") -> Outcome:
    accrual = accrual_of(event, event_id)
    return Outcome.NOT_ACCEPTED if accrual is None else store.accrue(accrual)


def test_a_sample_counts_once(store: BillingStore) -> None:
    assert accrue(store, indexed("S1", ge="1.2"), "e1") is Outcome.ACCRUED
    assert accrue(store, indexed("S1", ge="1.2"), "e1") is Outcome.UNCHANGED
    assert accrue(store, indexed("S1", ge="1.3", submission_id="again"), "e2") is Outcome.UPDATED
    billed = store.billed()
    assert len(billed) == 1 and billed[0].accrual.ge_micro == 1_300_000
    assert store.open_months() == [("2026-01", {Region.HOVEDSTADEN: 1_300_000})]


def test_only_accepted_samples_count(store: BillingStore) -> None:
    assert accrue(store, indexed("R1", accepted=False)) is Outcome.NOT_ACCEPTED
    assert store.billed() == []
    with pytest.raises(InconsistentEvent, match="contradicts"):
        accrual_of(indexed("R2").model_copy(update={"status": SampleStatus.REJECTED}), "e")


def test_received_month_is_copenhagen_time(store: BillingStore) -> None:
    accrue(store, indexed("S1", received_at=datetime(2026, 1, 31, 23, 30, tzinfo=UTC)))
    assert store.billed()[0].billed_month == "2026-02"


def test_close_january_then_late_arrival_is_an_adjustment(store: BillingStore) -> None:
    store.add_to_grant(532_281_00, by="finance", at=FEB)
    regions = list(Region)
    for i in range(2016):
        accrue(store, indexed(f"S{i}", region=regions[i % 5], department=f"D{i % 3}"), f"e{i}")
    result = store.close("2026-01", standard_rate_dkk=RATE, now=FEB, by="finance")
    s = result.statement
    assert result.created and not result.emitted
    assert (s.rate_dkk, s.total_ore, s.balance_after_ore) == (264, 532_224_00, 57_00)
    assert {(ln.key.region, ln.key.department) for ln in s.lines} == {
        (r, f"D{k}") for r in regions for k in range(3)
    }

    # a late January sample, and a replay of an already billed one
    assert accrue(store, indexed("LATE", region=Region.SYDDANMARK), "late") is Outcome.ACCRUED
    assert accrue(store, indexed("S0", ge="5"), "replayed") is Outcome.FROZEN
    accrue(store, indexed("FEB1", received_at=datetime(2026, 2, 2, tzinfo=UTC)), "f1")
    assert {b.accrual.sample_id: b.billed_month for b in store.billed("2026-02")} == {
        "LATE": "2026-02",
        "FEB1": "2026-02",
    }
    store.add_to_grant(1000_00, by="finance", at=FEB, note="top-up")
    feb = store.close(
        "2026-02", standard_rate_dkk=RATE, now=datetime(2026, 3, 2, tzinfo=UTC), by="f"
    ).statement
    adjustments = [ln for ln in feb.lines if ln.adjustment]
    assert [(ln.key.region, ln.key.received_month, ln.samples) for ln in adjustments] == [
        (Region.SYDDANMARK, "2026-01", 1)
    ]
    assert feb.balance_before_ore == 57_00 + 1000_00

    # closing again returns the very same statement and writes nothing
    again = store.close("2026-01", standard_rate_dkk=999, now=datetime(2027, 1, 1, tzinfo=UTC), by="other")
    assert not again.created and again.statement == s
    kinds = [e.kind for e in store.ledger()]
    assert kinds == [LedgerKind.OPENING, LedgerKind.MONTH_CLOSE, LedgerKind.TOP_UP, LedgerKind.MONTH_CLOSE]
    assert store.ledger()[1].amount_ore == -532_224_00 and store.ledger()[1].recorded_by == "finance"
    assert store.balance() == 57_00 + 1000_00 - feb.total_ore


def test_close_refusals(store: BillingStore) -> None:
    accrue(store, indexed("S1"))
    with pytest.raises(CloseRefused, match="no opening balance"):
        store.close("2026-01", standard_rate_dkk=RATE, now=FEB, by="f")
    store.add_to_grant(100_00, by="f", at=FEB)
    with pytest.raises(CloseRefused, match=r"has not ended yet.*--force"):
        store.close("2026-01", standard_rate_dkk=RATE, now=datetime(2026, 1, 20, tzinfo=UTC), by="f")
    accrue(store, indexed("S2", received_at=datetime(2026, 2, 2, tzinfo=UTC)))
    with pytest.raises(CloseRefused, match="close 2026-01 first"):
        store.close("2026-02", standard_rate_dkk=RATE, now=datetime(2026, 3, 5, tzinfo=UTC), by="f")
    store.close("2026-01", standard_rate_dkk=RATE, now=FEB, by="f")
    assert store.statement("2026-02") is None


def test_months_close_in_order(store: BillingStore) -> None:
    store.add_to_grant(100_00, by="f", at=FEB)
    store.close("2026-03", standard_rate_dkk=RATE, now=datetime(2026, 4, 2, tzinfo=UTC), by="f")
    with pytest.raises(CloseRefused, match="comes before 2026-03"):
        store.close("2026-02", standard_rate_dkk=RATE, now=datetime(2026, 4, 2, tzinfo=UTC), by="f")
    accrue(store, indexed("OLD", received_at=datetime(2026, 2, 2, tzinfo=UTC)))
    assert store.billed()[0].billed_month == "2026-04"


def test_forced_close_is_in_the_ledger(store: BillingStore) -> None:
    store.add_to_grant(1000_00, by="f", at=FEB)
    accrue(store, indexed("S1", received_at=datetime(2026, 2, 3, tzinfo=UTC)))
    result = store.close("2026-02", standard_rate_dkk=RATE, now=FEB, by="ops", force=True)
    assert result.statement.forced
    forced = [e for e in store.ledger() if e.kind == LedgerKind.FORCED_CLOSE]
    assert len(forced) == 1 and forced[0].recorded_by == "ops" and forced[0].month == "2026-02"
    assert forced[0].amount_ore == 0
    # what arrives for February after the forced close goes to March
    accrue(store, indexed("S2", received_at=datetime(2026, 2, 20, tzinfo=UTC)))
    assert {b.accrual.sample_id: b.billed_month for b in store.billed()} == {"S1": "2026-02", "S2": "2026-03"}


def test_ledger_and_statements_are_append_only(store: BillingStore) -> None:
    store.add_to_grant(100_00, by="f", at=FEB)
    store.close("2026-01", standard_rate_dkk=RATE, now=FEB, by="f")
    for statement in (
        "UPDATE billing_grant_ledger SET amount_ore = 1",
        "DELETE FROM billing_grant_ledger",
        "UPDATE billing_statements SET total_ore = 1",
        "DELETE FROM billing_statements",
    ):
        with pytest.raises(DatabaseError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))


def test_emission_is_remembered(store: BillingStore) -> None:
    store.add_to_grant(100_00, by="f", at=FEB)
    s = store.close("2026-01", standard_rate_dkk=RATE, now=FEB, by="f").statement
    assert store.unemitted() == [s]
    store.mark_emitted(s, FEB)
    store.mark_emitted(s, FEB)
    assert store.unemitted() == []
    assert store.close("2026-01", standard_rate_dkk=RATE, now=FEB, by="f").emitted


def test_opening_balance_from_settings_only_on_an_empty_ledger(store: BillingStore) -> None:
    assert store.ensure_opening(None, by="s", at=FEB) is None
    first = store.ensure_opening(5_00, by="settings", at=FEB)
    assert first is not None and first.kind == LedgerKind.OPENING
    assert store.ensure_opening(9_00, by="settings", at=FEB) is None
    assert store.add_to_grant(1_00, by="f", at=FEB).kind == LedgerKind.TOP_UP
    assert store.balance() == 6_00


def test_accruals_and_a_close_never_interleave(store: BillingStore) -> None:
    """Accrue from threads while January closes: each sample is on the statement or on
    February, never on both or neither."""
    store.add_to_grant(10**9, by="f", at=FEB)

    def worker(k: int) -> None:
        for i in range(60):
            accrue(store, indexed(f"T{k}-{i}", analysis_type=AnalysisType.WES))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    statement = store.close("2026-01", standard_rate_dkk=RATE, now=FEB, by="f").statement
    for t in threads:
        t.join()
    january = {b.accrual.sample_id for b in store.billed("2026-01")}
    february = {b.accrual.sample_id for b in store.billed("2026-02")}
    assert len(january) + len(february) == 180 and not january & february
    assert statement.samples == len(january) and statement.total_ge_micro == len(january) * MICRO


def test_automatic_close_after_the_configured_days(store: BillingStore) -> None:
    store.add_to_grant(1000_00, by="f", at=FEB)
    accrue(store, indexed("J1"))
    accrue(store, indexed("F1", received_at=datetime(2026, 2, 10, tzinfo=UTC)))
    assert store.close_due(days=5, standard_rate_dkk=RATE, now=datetime(2026, 2, 5, 22, tzinfo=UTC)) == []
    closed = store.close_due(days=5, standard_rate_dkk=RATE, now=datetime(2026, 2, 5, 23, tzinfo=UTC))
    assert [s.month for s in closed] == ["2026-01"] and closed[0].closed_by == "auto-close"
    assert store.close_due(days=5, standard_rate_dkk=RATE, now=datetime(2026, 3, 1, tzinfo=UTC)) == []
    assert [
        s.month for s in store.close_due(days=5, standard_rate_dkk=RATE, now=datetime(2026, 3, 9, tzinfo=UTC))
    ] == ["2026-02"]
