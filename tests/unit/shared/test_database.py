"""The store base: one UTC column type, serialised writers, readers that do not wait (SQLite)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select
from sqlalchemy.exc import StatementError

from shared.database import Store, UtcDateTime

metadata = MetaData()
moments = Table(
    "moments",
    metadata,
    Column("n", Integer, primary_key=True),
    Column("at", UtcDateTime()),
)

zones = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.datetimes(min_value=datetime(2019, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones)


@settings(max_examples=60, deadline=None)
@given(st.lists(instants, min_size=1, max_size=8))
def test_any_aware_time_reads_back_as_the_same_instant_in_utc_and_sorts_as_instants(
    written: list[datetime],
) -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(moments), [{"n": n, "at": at} for n, at in enumerate(written)])
        read = conn.execute(select(moments.c.at).order_by(moments.c.n)).scalars().all()
        ordered = conn.execute(select(moments.c.n).order_by(moments.c.at, moments.c.n)).scalars().all()
        # A bound comparison is an instant comparison too, whatever zone the bound is in.
        first = min(written)
        later = conn.execute(select(moments.c.n).where(moments.c.at > first)).scalars().all()
    engine.dispose()
    assert read == written  # equal as instants
    assert all(at is not None and at.tzinfo is UTC for at in read)
    assert ordered == sorted(range(len(written)), key=lambda n: (written[n], n))
    assert sorted(later) == [n for n, at in enumerate(written) if at > first]


def test_a_naive_time_is_refused_and_nothing_is_written() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with pytest.raises(StatementError, match="needs its zone"), engine.begin() as conn:
        conn.execute(insert(moments), {"n": 1, "at": datetime(2026, 12, 1, 12, 0)})
    with engine.connect() as conn:
        assert conn.execute(select(moments)).all() == []
    engine.dispose()


class _Plain(Store):
    SERVICE = "test"
    MIGRATIONS = Path("unused")


@pytest.mark.parametrize("one_connection", [False, True])
def test_a_writing_transaction_holds_the_write_lock_from_its_start(
    tmp_path: Path, one_connection: bool
) -> None:
    """SQLite: BEGIN IMMEDIATE, so a second writer queues before either has written anything."""
    path = tmp_path / "store.sqlite"
    store = _Plain(f"sqlite:///{path}", one_connection=one_connection)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with store.writing(lock="ignored on SQLite") as conn:
            conn.exec_driver_sql("SELECT 1")  # a read only: the lock is held all the same
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # released with the transaction
        other.execute("ROLLBACK")
    finally:
        other.close()
        store.dispose()


def test_a_reader_does_not_hold_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = _Plain(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with store.reading() as conn:
            conn.exec_driver_sql("SELECT 1")
            # With no wait allowed (timeout=0), this raises "database is locked" if the
            # reader had taken SQLite's write lock.
            other.execute("BEGIN IMMEDIATE")
            assert other.in_transaction  # the other connection holds the write lock now
            other.execute("ROLLBACK")
    finally:
        other.close()
        store.dispose()


def test_the_store_keeps_the_wal_between_transactions(tmp_path: Path) -> None:
    """A closed transaction leaves the WAL in place: no checkpoint and delete on every commit."""
    path = tmp_path / "store.sqlite"
    store = _Plain(f"sqlite:///{path}")
    try:
        with store.writing() as conn:
            conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        store.engine.pool.dispose()  # the pool's connections closed: only the held one is left
        with store.writing() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        store.engine.pool.dispose()
        assert (tmp_path / "store.sqlite-wal").exists()
    finally:
        store.dispose()
    assert not (tmp_path / "store.sqlite-wal").exists()  # the last connection closed: checkpointed
