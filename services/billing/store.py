"""Billing's durable state: accruals, the grant ledger and the closed statements.

Every write is one transaction that first serialises against other billing writers (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), because an accrual and
a month close must never interleave: the consumer accrues in the service process while an
operator closes from the command line, and a sample must land either on the statement or on
the next open month, never on both or neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, tuple_, update

from services.billing.accrual import Accrual, Outcome
from services.billing.money import dkk_to_ore
from services.billing.months import auto_close_due, billed_month, has_ended
from services.billing.refund import LineKey, MonthLine, Statement, close_month
from services.billing.tables import accruals, emissions, grant_ledger, statements
from shared.database import Store
from shared.events import FIRST_MONTH, AnalysisType, Region, month_of

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_KEY = 0x6B696C6C  # the advisory lock of billing's writers on PostgreSQL
AUTO_CLOSE_BY = "auto-close"


class CloseRefused(Exception):
    """A month close that must not happen, with what to do instead."""


class LedgerKind:
    OPENING = "opening"
    TOP_UP = "top-up"
    MONTH_CLOSE = "month-close"
    FORCED_CLOSE = "forced-close"


@dataclass(frozen=True)
class LedgerEntry:
    entry_id: int
    kind: str
    amount_ore: int
    balance_after_ore: int
    month: str | None
    statement_id: str | None
    recorded_by: str
    recorded_at: datetime
    note: str


@dataclass(frozen=True)
class BilledAccrual:
    accrual: Accrual
    billed_month: str


@dataclass(frozen=True)
class CloseResult:
    statement: Statement
    created: bool
    emitted: bool


# The accrual path's statements, built once: it runs for every indexed event.
_LAST_CLOSED = select(func.max(statements.c.month))
# A sample is its region's: the region and the pseudonym together find its accrual.
_OF_SAMPLE = (accruals.c.region == bindparam("key_region")) & (accruals.c.sample_id == bindparam("key"))
_ACCRUAL_OF = select(accruals).where(_OF_SAMPLE)
_INSERT_ACCRUAL = insert(accruals)
_UPDATE_ACCRUAL = update(accruals).where(_OF_SAMPLE)
_SAMPLES_PER_READ = 500
"""Samples looked up by one query of a batch's accrual (a bound parameter pair each)."""


def _without_key(row: dict[str, Any]) -> dict[str, Any]:
    """An accrual row's values but its key (region, pseudonym), which an update keeps."""
    return {k: v for k, v in row.items() if k not in ("region", "sample_id")}


class BillingStore(Store):
    """Billing's state at one database URL.

    On SQLite the store keeps one connection for the life of the process, used by one
    thread at a time under a lock (the base's ``one_connection``): SQLite has one writer
    anyway, and an accrual and a month close must never interleave. PostgreSQL uses the
    engine's pool, every writer under one advisory lock for the whole ledger.
    """

    SERVICE = "billing"
    MIGRATIONS = MIGRATIONS

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        super().__init__(url, migrate=migrate, one_connection=True)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One read-write transaction, serialised against every other billing writer."""
        with self.writing(lock=LOCK_KEY) as conn:
            yield conn

    # -- accrual ---------------------------------------------------------------------
    @staticmethod
    def _last_closed(conn: Connection) -> str | None:
        month = conn.execute(_LAST_CLOSED).scalar_one_or_none()
        return None if month is None else str(month)

    def accrue(self, accrual: Accrual) -> Outcome:
        """Upsert one sample's accrual, unless the sample is on a closed statement already.

        The sample is (region, pseudonym): another region's sample of the same pseudonym is
        another accrual, never this one's update, nor a reason to freeze this one.
        """
        return self.accrue_all([accrual])[0]

    def accrue_all(self, batch: Sequence[Accrual]) -> list[Outcome]:
        """Upsert a batch of accruals in one transaction, each with the outcome it would have
        alone, in order (a later event about a sample in the batch decides, as it would one
        by one).

        One transaction, one read of the batch's samples and one write of each kind: a
        replay of the whole log then costs a commit per poll batch, not per event.
        """
        if not batch:
            return []
        with self.transaction() as conn:
            last_closed = self._last_closed(conn)
            keys = sorted({(a.region.value, a.sample_id) for a in batch})
            found: dict[tuple[str, str], dict[str, Any]] = {}
            for start in range(0, len(keys), _SAMPLES_PER_READ):
                chunk = keys[start : start + _SAMPLES_PER_READ]
                query = select(accruals).where(tuple_(accruals.c.region, accruals.c.sample_id).in_(chunk))
                for row in conn.execute(query).mappings():
                    found[(row["region"], row["sample_id"])] = dict(row)
            current = dict(found)
            outcomes = [self._outcome(a, current, last_closed) for a in batch]
            inserts = [current[k] for k in keys if k not in found]
            updates = [
                {**_without_key(current[k]), "key_region": k[0], "key": k[1]}
                for k in keys
                if k in found and current[k] != found[k]
            ]
            if inserts:
                conn.execute(_INSERT_ACCRUAL, inserts)
            if updates:
                conn.execute(_UPDATE_ACCRUAL, updates)
        return outcomes

    @staticmethod
    def _outcome(
        accrual: Accrual, current: dict[tuple[str, str], dict[str, Any]], last_closed: str | None
    ) -> Outcome:
        """What ``accrual`` does to the sample's row in ``current`` (changed in place)."""
        key = (accrual.region.value, accrual.sample_id)
        values = {
            "submission_id": accrual.submission_id,
            "department": accrual.department,
            "analysis_type": accrual.analysis_type.value,
            "received_at": accrual.received_at,
            "received_month": accrual.received_month,
            "billed_month": billed_month(accrual.received_month, last_closed),
            "ge_micro": accrual.ge_micro,
            "event_id": accrual.event_id,
        }
        # The trace context is where the accrual was seen, not what it is: a redelivery,
        # seen again in another span, leaves the accrual unchanged.
        row = current.get(key)
        if row is None:
            current[key] = {
                "region": key[0],
                "sample_id": key[1],
                **values,
                "trace_parent": accrual.trace_parent,
            }
            return Outcome.ACCRUED
        if last_closed is not None and row["billed_month"] <= last_closed:
            return Outcome.FROZEN
        if all(row[k] == v for k, v in values.items()):
            return Outcome.UNCHANGED
        current[key] = {**row, **values, "trace_parent": accrual.trace_parent}
        return Outcome.UPDATED

    def billed(self, month: str | None = None) -> list[BilledAccrual]:
        """Every accrual (of one billed month), ordered by sample: region, then pseudonym."""
        query = select(accruals).order_by(accruals.c.region, accruals.c.sample_id)
        if month is not None:
            query = query.where(accruals.c.billed_month == month)
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [
            BilledAccrual(
                Accrual(
                    sample_id=r.sample_id,
                    submission_id=r.submission_id,
                    region=Region(r.region),
                    department=r.department,
                    analysis_type=AnalysisType(r.analysis_type),
                    received_at=r.received_at,
                    received_month=r.received_month,
                    ge_micro=r.ge_micro,
                    event_id=r.event_id,
                    trace_parent=r.trace_parent,
                ),
                r.billed_month,
            )
            for r in rows
        ]

    def trace_parents(self, month: str) -> list[str]:
        """The trace contexts of the accruals billed on ``month``, by sample: what its close
        links to. Accruals from before trace contexts were kept have none."""
        query = (
            select(accruals.c.trace_parent)
            .where(accruals.c.billed_month == month)
            .where(accruals.c.trace_parent.is_not(None))
            .order_by(accruals.c.region, accruals.c.sample_id)
        )
        with self.reading() as conn:
            return [str(t) for t in conn.execute(query).scalars().all()]

    @staticmethod
    def _month_lines(conn: Connection, month: str) -> list[MonthLine]:
        rows = conn.execute(
            select(
                accruals.c.region,
                accruals.c.department,
                accruals.c.analysis_type,
                accruals.c.received_month,
                func.count().label("samples"),
                func.sum(accruals.c.ge_micro).label("ge_micro"),
            )
            .where(accruals.c.billed_month == month)
            .group_by(
                accruals.c.region, accruals.c.department, accruals.c.analysis_type, accruals.c.received_month
            )
        ).all()
        return [
            MonthLine(
                LineKey(Region(r.region), r.department, AnalysisType(r.analysis_type), r.received_month),
                int(r.samples),
                int(r.ge_micro),
            )
            for r in rows
        ]

    def open_months(self) -> list[tuple[str, dict[Region, int]]]:
        """Months with accruals and no statement yet, with micro-GE per region."""
        with self.reading() as conn:
            last_closed = self._last_closed(conn)
            query = (
                select(accruals.c.billed_month, accruals.c.region, func.sum(accruals.c.ge_micro))
                .group_by(accruals.c.billed_month, accruals.c.region)
                .order_by(accruals.c.billed_month)
            )
            if last_closed is not None:
                query = query.where(accruals.c.billed_month > last_closed)
            rows = conn.execute(query).all()
        months: dict[str, dict[Region, int]] = {}
        for month, region, micro in rows:
            months.setdefault(str(month), {})[Region(region)] = int(micro)
        return list(months.items())

    # -- grant ledger ----------------------------------------------------------------
    @staticmethod
    def _balance(conn: Connection) -> int | None:
        """The balance after the newest entry; None while the ledger is empty."""
        row = conn.execute(
            select(grant_ledger.c.balance_after_ore).order_by(grant_ledger.c.entry_id.desc()).limit(1)
        ).first()
        return None if row is None else int(row[0])

    @staticmethod
    def _record(
        conn: Connection,
        *,
        kind: str,
        amount_ore: int,
        by: str,
        at: datetime,
        note: str = "",
        month: str | None = None,
        statement_id: str | None = None,
    ) -> LedgerEntry:
        before = BillingStore._balance(conn) or 0
        after = before + amount_ore
        if after < 0:
            raise ValueError(f"the grant balance would fall below zero ({after} øre)")
        entry_id = conn.execute(
            insert(grant_ledger).values(
                kind=kind,
                amount_ore=amount_ore,
                balance_after_ore=after,
                month=month,
                statement_id=statement_id,
                recorded_by=by,
                recorded_at=at,
                note=note,
            )
        ).inserted_primary_key
        assert entry_id is not None
        return LedgerEntry(int(entry_id[0]), kind, amount_ore, after, month, statement_id, by, at, note)

    def add_to_grant(self, amount_ore: int, *, by: str, at: datetime, note: str = "") -> LedgerEntry:
        """An addition to the grant: its opening balance when the ledger is empty, else a top-up."""
        if amount_ore <= 0:
            raise ValueError("an addition to the grant must be more than 0 DKK")
        with self.transaction() as conn:
            kind = LedgerKind.OPENING if self._balance(conn) is None else LedgerKind.TOP_UP
            return self._record(conn, kind=kind, amount_ore=amount_ore, by=by, at=at, note=note)

    def ensure_opening(self, amount_ore: int | None, *, by: str, at: datetime) -> LedgerEntry | None:
        """Write the configured opening balance if the ledger is still empty."""
        if amount_ore is None:
            return None
        with self.transaction() as conn:
            if self._balance(conn) is not None:
                return None
            return self._record(
                conn, kind=LedgerKind.OPENING, amount_ore=amount_ore, by=by, at=at, note="from the settings"
            )

    def ledger(self) -> list[LedgerEntry]:
        with self.reading() as conn:
            rows = conn.execute(select(grant_ledger).order_by(grant_ledger.c.entry_id)).all()
        return [
            LedgerEntry(
                r.entry_id,
                r.kind,
                r.amount_ore,
                r.balance_after_ore,
                r.month,
                r.statement_id,
                r.recorded_by,
                r.recorded_at,
                r.note,
            )
            for r in rows
        ]

    def balance(self) -> int | None:
        with self.reading() as conn:
            return self._balance(conn)

    # -- month close -----------------------------------------------------------------
    def close(
        self, month: str, *, standard_rate_dkk: int, now: datetime, by: str, force: bool = False
    ) -> CloseResult:
        """Close ``month`` into its statement, or return the statement it already has."""
        with self.transaction() as conn:
            existing = self._statement(conn, month)
            if existing is not None:
                return CloseResult(
                    existing, created=False, emitted=self._emitted(conn, existing.statement_id)
                )
            last_closed = self._last_closed(conn)
            if last_closed is not None and month < last_closed:
                raise CloseRefused(
                    f"{month} comes before {last_closed}, which is closed already; months close in "
                    f"order, and what arrives for {month} now is billed on the next open month"
                )
            if not has_ended(month, now) and not force:
                raise CloseRefused(
                    f"{month} has not ended yet (it ends at midnight Europe/Copenhagen on its last day); "
                    "samples may still arrive for it. Use --force to close it anyway: the forced close "
                    "is recorded in the grant ledger"
                )
            if month < FIRST_MONTH or month > month_of(now):
                raise CloseRefused(
                    f"{month} lies outside the service's life ({FIRST_MONTH} to the current month): "
                    "no sample can have been received in it, and its statement would be impossible"
                )
            earlier = (
                conn.execute(
                    select(accruals.c.billed_month)
                    .where(accruals.c.billed_month < month)
                    .where(accruals.c.billed_month > (last_closed or ""))
                    .distinct()
                    .order_by(accruals.c.billed_month)
                )
                .scalars()
                .all()
            )
            if earlier:
                raise CloseRefused(
                    f"close {', '.join(earlier)} first: months close in order, and they have accruals"
                )
            balance = self._balance(conn)
            if balance is None:
                raise CloseRefused(
                    "the grant ledger has no opening balance: record it with "
                    "`genomhub billing grant add AMOUNT` or set GENOMHUB_BILLING_OPENING_BALANCE_DKK"
                )
            statement = close_month(
                month,
                self._month_lines(conn, month),
                balance,
                standard_rate_dkk,
                closed_at=now,
                closed_by=by,
                forced=force and not has_ended(month, now),
            )
            conn.execute(
                insert(statements).values(
                    statement_id=statement.statement_id,
                    month=month,
                    event_id=statement.event_id,
                    closed_at=statement.closed_at,
                    closed_by=by,
                    forced=statement.forced,
                    rate_dkk=statement.rate_dkk,
                    total_ge_micro=statement.total_ge_micro,
                    total_ore=statement.total_ore,
                    balance_before_ore=statement.balance_before_ore,
                    balance_after_ore=statement.balance_after_ore,
                    document=json.dumps(statement.document(), sort_keys=True),
                )
            )
            if statement.forced:
                self._record(
                    conn,
                    kind=LedgerKind.FORCED_CLOSE,
                    amount_ore=0,
                    by=by,
                    at=now,
                    month=month,
                    statement_id=statement.statement_id,
                    note=f"{month} closed with --force before it ended",
                )
            self._record(
                conn,
                kind=LedgerKind.MONTH_CLOSE,
                amount_ore=-statement.total_ore,
                by=by,
                at=now,
                month=month,
                statement_id=statement.statement_id,
                note=f"refund of {month} at {statement.rate_dkk} DKK per genome equivalent",
            )
            return CloseResult(statement, created=True, emitted=False)

    def close_due(self, *, days: int, standard_rate_dkk: int, now: datetime) -> list[Statement]:
        """The automatic close: every open month that ended ``days`` days ago or more, oldest
        first; a refusal (e.g. no opening balance) stops it, and it is tried again later."""
        closed = []
        for month, _ in self.open_months():
            if not auto_close_due(month, now, days):
                break
            result = self.close(month, standard_rate_dkk=standard_rate_dkk, now=now, by=AUTO_CLOSE_BY)
            closed.append(result.statement)
        return closed

    @staticmethod
    def _statement(conn: Connection, month: str) -> Statement | None:
        doc = conn.execute(select(statements.c.document).where(statements.c.month == month)).scalar()
        return None if doc is None else Statement.from_document(json.loads(doc))

    @staticmethod
    def _emitted(conn: Connection, statement_id: str) -> bool:
        found = conn.execute(select(emissions.c.event_id).where(emissions.c.statement_id == statement_id))
        return found.first() is not None

    def statement(self, month: str) -> Statement | None:
        with self.reading() as conn:
            return self._statement(conn, month)

    def statements(self) -> list[Statement]:
        with self.reading() as conn:
            docs = conn.execute(select(statements.c.document).order_by(statements.c.month)).scalars().all()
        return [Statement.from_document(json.loads(d)) for d in docs]

    def mark_emitted(self, statement: Statement, at: datetime) -> None:
        """Remember that the broker acknowledged the statement's event (so it is not sent again)."""
        with self.transaction() as conn:
            if not self._emitted(conn, statement.statement_id):
                conn.execute(
                    insert(emissions).values(
                        statement_id=statement.statement_id, event_id=statement.event_id, emitted_at=at
                    )
                )

    def unemitted(self) -> list[Statement]:
        """Closed statements whose event the broker has not acknowledged (a failed publish)."""
        with self.reading() as conn:
            docs = (
                conn.execute(
                    select(statements.c.document)
                    .where(statements.c.statement_id.not_in(select(emissions.c.statement_id)))
                    .order_by(statements.c.month)
                )
                .scalars()
                .all()
            )
        return [Statement.from_document(json.loads(d)) for d in docs]


def open_store(url: str, opening_balance_dkk: Decimal | None) -> BillingStore:
    """The store at ``url``, migrated, with the configured opening balance written if the
    ledger is empty (``GENOMHUB_BILLING_OPENING_BALANCE_DKK``)."""
    store = BillingStore(url)
    if opening_balance_dkk is not None:
        store.ensure_opening(
            dkk_to_ore(opening_balance_dkk),
            by="settings (GENOMHUB_BILLING_OPENING_BALANCE_DKK)",
            at=datetime.now(UTC),
        )
    return store
