"""Billing's batch accrual (a poll batch in one transaction) against accrual one by one, on
real SQLite and PostgreSQL: the same outcomes, the same rows, and a replay that changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.billing.accrual import Accrual, Outcome, accrual_of
from services.billing.store import BillingStore
from shared.events import Region
from tests.unit.billing.billing_factories import indexed

FEB = datetime(2026, 2, 10, tzinfo=UTC)


def accruals() -> list[Accrual]:
    """A log's worth of accruals: new samples, redeliveries, a correction, the same pseudonym
    in another region, and a sample corrected twice within one batch."""
    events = [(indexed(f"S{i}", ge=f"1.{i}"), f"e{i}") for i in range(12)]
    events += [(indexed("S3", ge="1.3"), "e3")]  # a redelivery
    events += [(indexed("S4", ge="0.9", submission_id="again"), "e4b")]  # a correction
    events += [(indexed("S4", ge="0.8", submission_id="third"), "e4c")]  # corrected again
    events += [(indexed("S5", region=Region.SJAELLAND, ge="2"), "e5-sj")]  # another region's S5
    found = [accrual_of(event, event_id, f"00-{'a' * 32}-{'b' * 16}-01") for event, event_id in events]
    return [a for a in found if a is not None]


def accrue_in_batches(store: BillingStore, batch: list[Accrual], size: int) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for start in range(0, len(batch), size):
        outcomes += store.accrue_all(batch[start : start + size])
    return outcomes


def test_a_batch_accrues_as_one_by_one_would(store: BillingStore, billing_url: str, tmp_path: Path) -> None:
    one_by_one = BillingStore(f"sqlite:///{tmp_path / 'one-by-one.sqlite'}")
    try:
        log = accruals()
        expected = [one_by_one.accrue(a) for a in log]
        assert expected.count(Outcome.UPDATED) == 2 and Outcome.UNCHANGED in expected
        assert accrue_in_batches(store, log, 7) == expected
        assert store.billed() == one_by_one.billed()
        assert store.open_months() == one_by_one.open_months()
    finally:
        one_by_one.dispose()


def test_replaying_the_log_in_batches_changes_nothing(store: BillingStore) -> None:
    log = accruals()
    accrue_in_batches(store, log, 5)
    before = store.billed()
    replayed = accrue_in_batches(store, log, 9)
    # Every row ends as its sample's last event left it; a sample with one event (or one
    # event delivered twice) is not even touched on the way.
    assert store.billed() == before
    events_of: dict[tuple[Region, str], set[str]] = {}
    for a in log:
        events_of.setdefault((a.region, a.sample_id), set()).add(a.event_id)
    assert all(
        outcome is Outcome.UNCHANGED
        for a, outcome in zip(log, replayed, strict=True)
        if len(events_of[(a.region, a.sample_id)]) == 1
    )
    assert replayed.count(Outcome.ACCRUED) == 0


def test_a_batch_after_a_close_freezes_the_closed_samples(store: BillingStore) -> None:
    log = accruals()
    store.accrue_all(log[:6])
    store.add_to_grant(10_000_000_00, by="finance", at=FEB)
    store.close("2026-01", standard_rate_dkk=300, now=FEB, by="finance")
    outcomes = store.accrue_all(log)
    assert outcomes[:6] == [Outcome.FROZEN] * 6
    assert Outcome.ACCRUED in outcomes[6:]
    billed = {
        b.accrual.sample_id: b.billed_month for b in store.billed() if b.accrual.region is Region.HOVEDSTADEN
    }
    assert billed["S0"] == "2026-01" and billed["S7"] == "2026-02"  # late arrivals go to the open month


def test_an_empty_batch_is_nothing(store: BillingStore) -> None:
    assert store.accrue_all([]) == []
    assert store.billed() == []
