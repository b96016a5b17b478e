"""Two billing replicas on one database: the same and overlapping indexed events accrued at
once, and the same month closed by both at once, have their effects exactly once.

Each replica is its own store (its own engine and connections), as two pods are; they meet
only in the database, on SQLite (one file) and on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest

from services.billing.accrual import Outcome, accrual_of
from services.billing.store import BillingStore, CloseResult, LedgerKind
from shared.events import MICRO_GE, Region
from tests.unit.billing.billing_factories import indexed

FEB = datetime(2026, 2, 10, tzinfo=UTC)
RATE = 300
SAMPLES = 40


@pytest.fixture
def replicas(billing_url: str) -> Iterator[tuple[BillingStore, BillingStore]]:
    first = BillingStore(billing_url)
    second = BillingStore(billing_url, migrate=False)
    try:
        yield first, second
    finally:
        first.dispose()
        second.dispose()


def at_once(*work: Callable[[], Any]) -> list[Any]:
    """Run each piece of work on its own thread, all released together by one barrier."""
    start = threading.Barrier(len(work))

    def released(job: Callable[[], Any]) -> Any:
        start.wait()
        return job()

    with ThreadPoolExecutor(len(work)) as pool:
        return [f.result() for f in [pool.submit(released, job) for job in work]]


def accrue_all(store: BillingStore, samples: range, region: Region = Region.HOVEDSTADEN) -> list[Outcome]:
    outcomes = []
    for i in samples:
        accrual = accrual_of(indexed(f"S{i}", region=region, ge="1.5"), f"e-{region.value}-{i}")
        assert accrual is not None
        outcomes.append(store.accrue(accrual))
    return outcomes


def test_two_replicas_accrue_overlapping_events_once_and_close_the_month_once(
    replicas: tuple[BillingStore, BillingStore],
) -> None:
    a, b = replicas
    a.add_to_grant(10**9, by="finance", at=FEB)
    # Each replica is handed half the log, and a redelivery of the other's middle third.
    first, second = at_once(lambda: accrue_all(a, range(0, 30)), lambda: accrue_all(b, range(10, 40)))
    outcomes = Counter(first + second)
    assert outcomes == {Outcome.ACCRUED: SAMPLES, Outcome.UNCHANGED: 20}
    billed = a.billed()
    assert sorted(x.accrual.sample_id for x in billed) == sorted(f"S{i}" for i in range(SAMPLES))
    assert b.billed() == billed

    # Both replicas' automatic close fires for January at the same moment.
    closes = at_once(
        *(partial(s.close, "2026-01", standard_rate_dkk=RATE, now=FEB, by="auto-close") for s in (a, b))
    )
    assert sorted(c.created for c in closes) == [False, True]
    assert closes[0].statement == closes[1].statement
    [statement] = a.statements()
    assert statement == closes[0].statement and b.statements() == [statement]
    assert statement.samples == SAMPLES and statement.total_ge_micro == SAMPLES * 3 * MICRO_GE // 2
    ledger = a.ledger()
    assert [e.kind for e in ledger] == [LedgerKind.OPENING, LedgerKind.MONTH_CLOSE]
    assert ledger[-1].amount_ore == -statement.total_ore
    assert a.balance() == b.balance() == 10**9 - statement.total_ore == statement.balance_after_ore


def test_accruals_on_one_replica_and_the_close_on_the_other_never_interleave(
    replicas: tuple[BillingStore, BillingStore],
) -> None:
    """While one replica closes January, both keep accruing January's samples (another
    region's on each): every sample is on the statement or on February, once."""
    a, b = replicas
    a.add_to_grant(10**9, by="finance", at=FEB)
    accrue_all(a, range(0, 5))

    def close() -> CloseResult:
        return b.close("2026-01", standard_rate_dkk=RATE, now=FEB, by="finance")

    result: CloseResult
    _, _, result = at_once(
        lambda: accrue_all(a, range(5, 45), Region.SYDDANMARK),
        lambda: accrue_all(b, range(5, 45), Region.MIDTJYLLAND),
        close,
    )
    months = Counter(x.billed_month for x in a.billed())
    assert months["2026-01"] + months["2026-02"] == 5 + 80 and set(months) <= {"2026-01", "2026-02"}
    assert result.created and result.statement.samples == months["2026-01"]
    assert a.statement("2026-01") == result.statement
    assert a.balance() == 10**9 - result.statement.total_ore
