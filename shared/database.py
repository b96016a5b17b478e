"""Relational state of the services that keep some (submissions, the catalogue, billing's
ledger, the harmoniser's job queue): the one store base they are built on.

SQLAlchemy 2 engines over SQLite (the embedded default, a file under GENOMHUB_HOME) or
PostgreSQL (production), and Alembic migrations kept in ``services/<name>/migrations``. Each
service versions its schema in its own table, so services may share one database. A schema
changes only through :func:`upgrade`: ``genomhub db upgrade``, or a service at its start.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    TypeDecorator,
    create_engine,
    event,
    func,
    select,
    text,
)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Pooled: closing the last connection to a WAL database checkpoints and deletes the WAL,
        # which costs 10-20 ms a transaction if every transaction opened its own connection.
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True, **kwargs)


def alembic_config(url: str, migrations: Path, service: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["version_table"] = f"alembic_version_{service}"
    return cfg


def upgrade(url: str, migrations: Path, service: str) -> None:
    """Bring the schema of ``service`` at ``url`` to its newest migration."""
    command.upgrade(alembic_config(url, migrations, service), "head")


def run_migrations(target_metadata: MetaData) -> None:
    """The body of a service's ``migrations/env.py``: online migrations on the configured URL."""
    from alembic import context

    cfg = context.config
    engine = make_engine(str(cfg.get_main_option("sqlalchemy.url")))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=cfg.attributes.get("version_table", "alembic_version"),
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def reachable(engine: Engine) -> Callable[[], Awaitable[None]]:
    """A readiness check: the database answers a trivial query."""

    async def database_reachable() -> None:
        def ping() -> None:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        await asyncio.to_thread(ping)

    return database_reachable


class UtcDateTime(TypeDecorator[datetime]):
    """An instant: stored as UTC, read back as an aware UTC datetime, on SQLite and PostgreSQL.

    PostgreSQL keeps it as ``timestamptz`` and hands it back in the session's zone; SQLite
    keeps SQLAlchemy's fixed-width text (``YYYY-MM-DD HH:MM:SS.ffffff``), which has no zone,
    so the value is turned to UTC before it is written (SQLAlchemy would write an aware
    datetime's wall clock in its own zone). The text then sorts as the instants do, which
    keyset cursors and range filters rely on. A naive datetime is refused: which zone it
    meant cannot be told.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"an instant needs its zone to be stored; {value.isoformat()} has none")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_WRITING = "genomhub_writing"
"""The execution option that makes a SQLite transaction ``BEGIN IMMEDIATE``."""


def _begin_explicitly(engine: Engine) -> None:
    """SQLite transactions begun by SQLAlchemy, not by the driver (SQLAlchemy's documented recipe).

    The driver would begin a transaction only at the first write, so a transaction that reads
    first would see no single snapshot, and two writers that both read first could each hold
    a read lock the other's write waits for. Here every transaction begins when SQLAlchemy
    begins it: a writing one ``BEGIN IMMEDIATE`` (it takes the write lock first, waiting up to
    the busy timeout, so writers queue instead of failing), a reading one ``BEGIN``.
    """

    @event.listens_for(engine, "connect")
    def _manual_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITING) else "BEGIN")


def _advisory_lock(key: int | str) -> Any:
    """PostgreSQL's transaction-scoped advisory lock on ``key`` (a text key is hashed to one)."""
    return select(func.pg_advisory_xact_lock(func.hashtext(key) if isinstance(key, str) else key))


class Store:
    """The base of a service's relational store: its engine, its transactions, its schema.

    Writers are serialised: on SQLite a writing transaction begins ``BEGIN IMMEDIATE``; on
    PostgreSQL it first takes a transaction-scoped advisory lock on the key the caller names
    (what must not interleave: one sample for the catalogue, the whole ledger for billing),
    or none where row constraints suffice. Readers never wait for writers, but on SQLite each
    read transaction is one snapshot.

    On a SQLite file the store holds one connection for its life. When the last connection
    to a WAL database closes, SQLite checkpoints and deletes the WAL, ~10-20 ms on every
    transaction if each one opened its own; a held connection keeps the WAL, and SQLite then
    checkpoints on its own every 1000 pages. With ``one_connection`` that held connection is
    the only one, used by one thread at a time under a lock, and every transaction on it is
    immediate (a store whose readers and writers are few and must not interleave at all);
    otherwise it only keeps the WAL while the pool serves readers and writers in parallel.
    PostgreSQL uses the engine's pool either way.

    Migrations are the subclass's: ``SERVICE`` names its version table and ``MIGRATIONS`` its
    Alembic folder (``services/<name>/migrations``), applied by :func:`upgrade` only.
    """

    SERVICE: ClassVar[str]
    MIGRATIONS: ClassVar[Path]

    def __init__(self, url: str, *, migrate: bool = False, one_connection: bool = False) -> None:
        """``migrate`` brings the schema to the newest migration first (where the service
        migrates at start); otherwise :meth:`migrate` or ``genomhub db upgrade`` does."""
        self.url = url
        if migrate:
            self.migrate()
        sqlite = url.startswith("sqlite")
        sqlite_file = sqlite and ":memory:" not in url and url.split("///", 1)[-1] != ""
        one_connection = one_connection and sqlite
        extra: dict[str, Any] = {"connect_args": {"check_same_thread": False}} if one_connection else {}
        self.engine = make_engine(url, **extra)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            _begin_explicitly(self.engine)
        self._lock = threading.RLock()
        self._keeps_wal = sqlite_file and not one_connection
        self._keeper: Any = None
        self._connection: Connection | None = None
        if one_connection:
            self._connection = self.engine.connect().execution_options(**{_WRITING: True})

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        upgrade(self.url, self.MIGRATIONS, self.SERVICE)

    def _keep_wal(self) -> None:
        """Open the connection that keeps the WAL, once, having read the database through it."""
        if not self._keeps_wal or self._keeper is not None:
            return
        with self._lock:
            if self._keeper is None:
                keeper = self.engine.raw_connection()
                cursor = keeper.cursor()
                cursor.execute("SELECT count(*) FROM sqlite_master")
                cursor.fetchall()
                cursor.close()
                self._keeper = keeper

    @contextmanager
    def _transaction(self, writing: bool) -> Iterator[Connection]:
        """A transaction: on the one held connection, under its lock, or on one from the pool."""
        if self._connection is not None:
            with self._lock, self._connection.begin():
                yield self._connection
            return
        self._keep_wal()
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITING: writing})
            with conn.begin():
                yield conn

    @contextmanager
    def writing(self, lock: int | str | None = None, *, locks: Iterable[str] = ()) -> Iterator[Connection]:
        """One serialised read-write transaction; on PostgreSQL under the advisory ``lock``,
        and under each of ``locks`` (a batch's samples), taken in sorted order so that two
        writers of overlapping batches cannot each hold what the other waits for."""
        with self._transaction(writing=True) as conn:
            if self.dialect == "postgresql":
                keys: list[int | str] = [] if lock is None else [lock]
                for key in keys + sorted(set(locks)):
                    conn.execute(_advisory_lock(key))
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A transaction to read in: on SQLite one snapshot, and no write lock taken."""
        with self._transaction(writing=False) as conn:
            yield conn

    def readiness(self) -> Callable[[], Awaitable[None]]:
        """The service's readiness check of this store: the database answers."""
        return reachable(self.engine)

    def dispose(self) -> None:
        """Close the held connection and the pool (named so that no domain verb is taken:
        billing closes months)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            if self._keeper is not None:
                self._keeper.close()
                self._keeper = None
        self.engine.dispose()
