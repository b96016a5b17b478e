"""Accruals, the grant ledger and month closes on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DatabaseError

from services.billing import tables
from services.billing.accrual import InconsistentEvent, Outcome, accrual_of
from services.billing.store import MIGRATIONS, BillingStore, CloseRefused, LedgerKind
from shared.database import alembic_config, make_engine
from shared.events import MICRO_GE, AnalysisType, Indexed, Region, SampleStatus
from tests.ids import issued_id
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
    assert statement.samples == len(january) and statement.total_ge_micro == len(january) * MICRO_GE


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


def test_two_regions_samples_of_one_pseudonym_are_two_accruals(store: BillingStore) -> None:
    """Pseudonyms are the regions' own: each region's S1 is billed to that region, once."""
    store.add_to_grant(1_000_000_00, by="finance", at=FEB)
    assert accrue(store, indexed("S2"), "cap-s2") is Outcome.ACCRUED
    assert accrue(store, indexed("S2", region=Region.MIDTJYLLAND, submission_id="mid-s2"), "mid-s2") is (
        Outcome.ACCRUED
    )
    # syddanmark's S1 passes QC in January; hovedstaden's own S1 is rejected then.
    south = indexed("S1", region=Region.SYDDANMARK, submission_id="south-s1")
    assert accrue(store, south, "south-s1") is Outcome.ACCRUED
    assert accrue(store, indexed("S1", accepted=False, submission_id="cap-s1-a"), "cap-s1-a") is (
        Outcome.NOT_ACCEPTED
    )
    assert store.open_months() == [
        ("2026-01", {Region.HOVEDSTADEN: MICRO_GE, Region.MIDTJYLLAND: MICRO_GE, Region.SYDDANMARK: MICRO_GE})
    ]
    january = store.close("2026-01", standard_rate_dkk=RATE, now=FEB, by="finance").statement
    assert {(r.region, r.samples) for r in january.regions} == {
        (Region.HOVEDSTADEN, 1),
        (Region.MIDTJYLLAND, 1),
        (Region.SYDDANMARK, 1),
    }
    # hovedstaden resubmits its S1 in February and it passes: its own sample, billed, not frozen.
    resubmitted = indexed(
        "S1", ge="2", received_at=datetime(2026, 2, 3, tzinfo=UTC), submission_id="cap-s1-b"
    )
    assert accrue(store, resubmitted, "cap-s1-b") is Outcome.ACCRUED
    # syddanmark's S1 stays on January's statement, and a replay of it is frozen there.
    assert accrue(store, south, "south-s1") is Outcome.FROZEN
    billed = {
        (b.accrual.region, b.accrual.sample_id): (b.billed_month, b.accrual.ge_micro) for b in store.billed()
    }
    assert billed == {
        (Region.HOVEDSTADEN, "S1"): ("2026-02", 2 * MICRO_GE),
        (Region.HOVEDSTADEN, "S2"): ("2026-01", MICRO_GE),
        (Region.MIDTJYLLAND, "S2"): ("2026-01", MICRO_GE),
        (Region.SYDDANMARK, "S1"): ("2026-01", MICRO_GE),
    }
    february = store.close(
        "2026-02", standard_rate_dkk=RATE, now=datetime(2026, 3, 2, tzinfo=UTC), by="finance"
    ).statement
    assert [(r.region, r.samples, r.ge_micro) for r in february.regions] == [
        (Region.HOVEDSTADEN, 1, 2 * MICRO_GE)
    ]


OLD_ID = issued_id("sub-old")
"""The id the billing factories issue for the label "sub-old"."""


def test_the_upgrade_keeps_accruals_and_keys_them_by_region_and_pseudonym(billing_url: str) -> None:
    """From the previous head (pseudonym-only key), with an accrual in it, to the new key."""
    command.upgrade(alembic_config(billing_url, MIGRATIONS, "billing"), "0001_billing")
    engine = make_engine(billing_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO billing_accruals (sample_id, submission_id, region, department, analysis_type, "
                f"received_at, received_month, billed_month, ge_micro, event_id) VALUES ('S1', '{OLD_ID}', "
                "'hovedstaden', 'Rigshospitalet', 'WGS', '2026-01-15T12:00:00+00:00', '2026-01', '2026-01', "
                "1500000, 'old')"
            )
        )
    engine.dispose()
    store = BillingStore(billing_url)
    try:
        assert inspect(store.engine).get_pk_constraint("billing_accruals")["constrained_columns"] == [
            "region",
            "sample_id",
        ]
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_billing"})
            assert compare_metadata(context, tables.metadata) == []
        (kept,) = store.billed()
        assert (kept.accrual.region, kept.accrual.sample_id, kept.accrual.ge_micro) == (
            Region.HOVEDSTADEN,
            "S1",
            1_500_000,
        )
        assert (kept.accrual.submission_id, kept.accrual.event_id, kept.billed_month) == (
            OLD_ID,
            "old",
            "2026-01",
        )
        assert kept.accrual.received_at == datetime(2026, 1, 15, 12, tzinfo=UTC)
        assert accrue(store, indexed("S1", region=Region.SYDDANMARK), "south") is Outcome.ACCRUED
        assert accrue(store, indexed("S1", ge="1.5", submission_id="sub-old"), "old") is Outcome.UNCHANGED
        assert len(store.billed()) == 2
    finally:
        store.dispose()


def test_the_downgrade_restores_the_pseudonym_key_while_pseudonyms_are_unique(billing_url: str) -> None:
    store = BillingStore(billing_url)
    assert accrue(store, indexed("S1", ge="1.2"), "e1") is Outcome.ACCRUED
    store.dispose()
    config = alembic_config(billing_url, MIGRATIONS, "billing")
    command.downgrade(config, "0001_billing")
    engine = make_engine(billing_url)
    try:
        assert inspect(engine).get_pk_constraint("billing_accruals")["constrained_columns"] == ["sample_id"]
    finally:
        engine.dispose()
    again = BillingStore(billing_url)
    try:
        assert [(b.accrual.region, b.accrual.sample_id, b.accrual.ge_micro) for b in again.billed()] == [
            (Region.HOVEDSTADEN, "S1", 1_200_000)
        ]
    finally:
        again.dispose()


def traced(store: BillingStore, event: Indexed, event_id: str, trace_parent: str) -> Outcome:
    accrual = accrual_of(event, event_id, trace_parent)
    assert accrual is not None
    return store.accrue(accrual)


def test_a_month_s_accruals_keep_the_trace_context_its_close_links_to(store: BillingStore) -> None:
    """Each accrual keeps where billing saw it, in its submission's trace; a redelivery seen
    in another span changes nothing, a later event about the sample takes its own context."""
    first, again, later = (f"00-{n:032x}-{n:016x}-01" for n in (1, 2, 3))
    assert traced(store, indexed("T1", received_at=FEB), "e1", first) is Outcome.ACCRUED
    assert (
        traced(store, indexed("T2", received_at=FEB, region=Region.SYDDANMARK), "e2", later)
        is Outcome.ACCRUED
    )
    assert traced(store, indexed("T1", received_at=FEB), "e1", again) is Outcome.UNCHANGED
    assert store.trace_parents("2026-02") == [first, later]
    assert traced(store, indexed("T1", received_at=FEB, ge="2"), "e3", again) is Outcome.UPDATED
    assert store.trace_parents("2026-02") == [again, later]
    assert store.trace_parents("2026-03") == []
    assert accrue(store, indexed("T3", received_at=FEB)) is Outcome.ACCRUED  # no trace context
    assert len(store.trace_parents("2026-02")) == 2
    assert {b.accrual.sample_id: b.accrual.trace_parent for b in store.billed("2026-02")}["T3"] is None


def test_the_upgrade_to_trace_contexts_keeps_accruals_without_one(billing_url: str) -> None:
    command.upgrade(alembic_config(billing_url, MIGRATIONS, "billing"), "0002_billing")
    engine = make_engine(billing_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO billing_accruals (sample_id, submission_id, region, department, analysis_type, "
                f"received_at, received_month, billed_month, ge_micro, event_id) VALUES ('S1', '{OLD_ID}', "
                "'hovedstaden', 'Rigshospitalet', 'WGS', '2026-01-15T12:00:00+00:00', '2026-01', '2026-01', "
                "1500000, 'old')"
            )
        )
    engine.dispose()
    store = BillingStore(billing_url)
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_billing"})
            assert compare_metadata(context, tables.metadata) == []
        ((kept, month),) = [(b.accrual, b.billed_month) for b in store.billed()]
        assert (kept.sample_id, kept.trace_parent, month) == ("S1", None, "2026-01")
        assert store.trace_parents("2026-01") == []
    finally:
        store.dispose()
    command.downgrade(alembic_config(billing_url, MIGRATIONS, "billing"), "0002_billing")
    engine = make_engine(billing_url)
    try:
        assert "trace_parent" not in {c["name"] for c in inspect(engine).get_columns("billing_accruals")}
    finally:
        engine.dispose()


APPEND_ONLY_ATTEMPTS = (
    "UPDATE billing_grant_ledger SET amount_ore = 1",
    "DELETE FROM billing_grant_ledger",
    "UPDATE billing_statements SET total_ore = 1",
    "DELETE FROM billing_statements",
)


def test_the_upgrade_to_instants_keeps_every_time_and_the_append_only_guarantee(billing_url: str) -> None:
    """From 0003's ISO text to the shared column type: every row of the four tables keeps
    its instant to the microsecond, whatever the session's zone, and the ledger and the
    statements still refuse UPDATE and DELETE afterwards (and again after a downgrade)."""
    config = alembic_config(billing_url, MIGRATIONS, "billing")
    command.upgrade(config, "0003_billing")
    received = datetime(2026, 1, 31, 23, 30, 0, 123456, tzinfo=UTC)  # February in Copenhagen
    recorded = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
    closed = datetime(2026, 2, 2, 9, 15, 30, 5, tzinfo=UTC)
    emitted = datetime(2026, 2, 2, 9, 15, 31, tzinfo=UTC)
    engine = make_engine(billing_url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            database = billing_url.rpartition("/")[2]
            conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET timezone TO 'Europe/Copenhagen'")
        conn.execute(
            text(
                "INSERT INTO billing_accruals (region, sample_id, submission_id, department, analysis_type, "
                "received_at, received_month, billed_month, ge_micro, event_id) VALUES ('hovedstaden', 'S1', "
                f"'{OLD_ID}', 'Rigshospitalet', 'WGS', :at, '2026-02', '2026-02', 1000000, 'old')"
            ),
            {"at": received.isoformat()},
        )
        conn.execute(
            text(
                "INSERT INTO billing_grant_ledger (kind, amount_ore, balance_after_ore, recorded_by, "
                "recorded_at, note) VALUES ('opening', 100, 100, 'finance', :at, '')"
            ),
            {"at": recorded.isoformat()},
        )
        conn.execute(
            text(
                "INSERT INTO billing_statements (statement_id, month, event_id, closed_at, closed_by, forced, "
                "rate_dkk, total_ge_micro, total_ore, balance_before_ore, balance_after_ore, document) "
                "VALUES ('st-1', '2026-01', 'ev-1', :at, 'finance', false, 300, 0, 0, 100, 100, '{}')"
            ),
            {"at": closed.isoformat()},
        )
        conn.execute(
            text(
                "INSERT INTO billing_emissions (statement_id, event_id, emitted_at) VALUES ('st-1', 'ev-1', :at)"
            ),
            {"at": emitted.isoformat()},
        )
    engine.dispose()

    def stored_times() -> list[datetime]:
        with store.reading() as conn:
            return [
                conn.execute(select(column)).scalar_one()
                for column in (
                    tables.accruals.c.received_at,
                    tables.grant_ledger.c.recorded_at,
                    tables.statements.c.closed_at,
                    tables.emissions.c.emitted_at,
                )
            ]

    def refuses_changes() -> None:
        for statement in APPEND_ONLY_ATTEMPTS:
            with pytest.raises(DatabaseError, match="append-only"), store.engine.begin() as conn:
                conn.execute(text(statement))

    store = BillingStore(billing_url)
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_billing"})
            assert compare_metadata(context, tables.metadata) == []
        times = stored_times()
        assert times == [received, recorded, closed, emitted]
        assert all(t.utcoffset() == timedelta(0) for t in times)
        assert [e.recorded_at for e in store.ledger()] == [recorded]
        refuses_changes()
        # A time is now compared as an instant, not as text.
        with store.reading() as conn:
            later = tables.accruals.c.received_at > datetime(
                2026, 2, 1, 0, 29, tzinfo=timezone(timedelta(hours=1))
            )
            assert conn.execute(select(tables.accruals.c.sample_id).where(later)).scalars().all() == ["S1"]
    finally:
        store.dispose()

    command.downgrade(config, "0003_billing")
    engine = make_engine(billing_url)
    try:
        with engine.connect() as conn:
            texts = [
                conn.exec_driver_sql(f"SELECT {column} FROM {table}").scalar_one()
                for table, column in (
                    ("billing_accruals", "received_at"),
                    ("billing_grant_ledger", "recorded_at"),
                    ("billing_statements", "closed_at"),
                    ("billing_emissions", "emitted_at"),
                )
            ]
        assert [datetime.fromisoformat(t) for t in texts] == [received, recorded, closed, emitted]
        for statement in APPEND_ONLY_ATTEMPTS:
            with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    store = BillingStore(billing_url)
    try:
        assert stored_times() == [received, recorded, closed, emitted]
        refuses_changes()
    finally:
        store.dispose()
