"""Relational state of the services that keep some (submissions, the catalogue, billing's
ledger, the harmoniser's job queue): the one store base they are built on.

SQLAlchemy 2 engines over SQLite (the embedded default, a file under GENOMHUB_HOME) or
PostgreSQL (production), and Alembic migrations kept in ``services/<name>/migrations``. Each
service versions its schema in its own table, so services may share one database. A schema
changes only through :func:`upgrade`: ``genomhub db upgrade``, or a service at its start.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    String,
    Table,
    TypeDecorator,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)

from shared.locks import exclusively


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


@contextmanager
def _migrating(url: str, service: str) -> Iterator[None]:
    """Hold the lock under which one process at a time migrates ``service``'s schema at ``url``.

    Replicas start together and each migrates as it opens its store; unserialised, two of
    them both find a fresh database unmigrated and the second fails on "table already exists".
    Under the lock the second finds the schema at head and does nothing. PostgreSQL: a
    session advisory lock on a connection of its own; a SQLite file: an exclusive ``flock`` on
    a file beside it (SQLite's own DDL is not transactional under Alembic here).
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if not path or path == ":memory:":
            yield
            return
        with exclusively(Path(f"{path}.migrating")):
            yield
        return
    engine = make_engine(url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            key = func.hashtext(f"genomhub migrate {service}")
            conn.execute(select(func.pg_advisory_lock(key)))
            try:
                yield
            finally:
                conn.execute(select(func.pg_advisory_unlock(key)))
    finally:
        engine.dispose()


def upgrade(url: str, migrations: Path, service: str) -> None:
    """Bring the schema of ``service`` at ``url`` to its newest migration, one process at a time."""
    with _migrating(url, service):
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


def append_only_statements(table: str, dialect: str) -> list[str]:
    """The SQL that makes ``table`` append-only: triggers that refuse every UPDATE and DELETE
    with "<table> is append-only" (a ledger that no one may rewrite, on SQLite and PostgreSQL).
    A migration executes them after creating the table."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            for action in ("UPDATE", "DELETE")
        ]
    if dialect == "postgresql":
        return [
            f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{table} is append-only'; END $$",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()",
        ]
    raise ValueError(f"no append-only triggers for {dialect}")


def drop_append_only_statements(table: str, dialect: str) -> list[str]:
    """What undoes :func:`append_only_statements` before ``table`` is dropped (SQLite drops a
    table's triggers with it)."""
    if dialect == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"DROP FUNCTION IF EXISTS {table}_append_only()",
        ]
    return []


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


def replica_id() -> str:
    """Who this process is among the replicas: host (the pod's name in Kubernetes) and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_gone(holder: str) -> bool:
    """Whether the holder of a lease (a :func:`replica_id` and a suffix) is a process of this
    host that no longer exists: it will never renew, so its lease need not be waited out (a
    receiver restarted on its host takes its predecessor's files back at once). A pid that
    exists may be a reused one, and a holder elsewhere cannot be seen: then the lease decides."""
    host, _, rest = holder.partition(":")
    pid = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's
        return False
    return False


def lease_table(metadata: MetaData, service: str) -> Table:
    """The table of a service's named leases, ``<service>_leases`` (each service migrates its
    own, so services sharing one database keep theirs apart)."""
    return Table(
        f"{service}_leases",
        metadata,
        Column("name", String(512), primary_key=True),
        Column("holder", String(160), nullable=False),
        Column("expires_at", UtcDateTime(), nullable=False),
    )


class LeaseHeld(Exception):
    """The named lease is held by another holder (another request or another replica)."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"{name} is held by {holder}")
        self.name = name
        self.holder = holder


class LeaseLost(Exception):
    """A lease ran out before its holder was done (its heartbeats failed or came too late)."""


T = TypeVar("T")


@dataclass
class Lease:
    """One holding of a named lease: ``holder`` is unique to this holding, so a second request
    of the same replica for the same name is refused like another replica's."""

    name: str
    holder: str
    expires_at: datetime
    lost: bool = False

    def check(self) -> None:
        """Raise :class:`LeaseLost` once the lease is lost: work done under it must stop."""
        if self.lost:
            raise LeaseLost(f"the lease on {self.name} ran out; another holder may have it")

    def guard(self, step: Callable[..., T]) -> Callable[..., T]:
        """``step`` refusing to run once the lease is lost (e.g. each read of an upload's body)."""

        def guarded(*args: Any) -> T:
            self.check()
            return step(*args)

        return guarded


class NamedLeases:
    """Named leases in a service's database: what one process did with an ``asyncio.Lock``,
    held across all replicas of the service.

    Why a lease row rather than PostgreSQL's session advisory locks on a dedicated
    connection: the row works the same on SQLite (the embedded stack's replicas share one
    file) and on PostgreSQL, so there is one mechanism and one set of tests; it frees itself
    after ``length`` when its holder dies however it dies (a session lock waits for the server
    to notice the dead TCP connection, which behind a NAT or a partition can take the kernel's
    keepalive, hours); it holds no connection for an upload's hours (an advisory lock would pin
    one pool connection per upload in flight); and the table shows operators who holds what.
    The price is a heartbeat, one short UPDATE every ``length / 3``, and the rule that the
    replicas' clocks agree to well within ``length`` (NTP does).

    A row is taken under the store's write serialisation (SQLite ``BEGIN IMMEDIATE``,
    PostgreSQL an advisory transaction lock on the name), so two takers of a free or expired
    lease are ordered and exactly one wins. A holder that loses its lease (its heartbeats
    could not reach the database before it expired) is told through :attr:`Lease.lost`.
    """

    def __init__(self, store: Store, table: Table, length: timedelta) -> None:
        self.store = store
        self.table = table
        self.length = length
        self.replica = replica_id()

    def acquire(self, name: str) -> Lease:
        """Take the lease on ``name`` if it is free, expired or its holder's process is gone
        (:func:`holder_gone`); else :class:`LeaseHeld`."""
        t = self.table
        holder = f"{self.replica}:{uuid.uuid4().hex[:8]}"
        now = datetime.now(UTC)
        with self.store.writing(lock=f"lease:{t.name}:{name}") as conn:
            current = conn.execute(select(t.c.holder, t.c.expires_at).where(t.c.name == name)).first()
            if current is not None and current.expires_at > now and not holder_gone(current.holder):
                raise LeaseHeld(name, current.holder)
            if current is not None:
                conn.execute(delete(t).where(t.c.name == name))
            conn.execute(insert(t).values(name=name, holder=holder, expires_at=now + self.length))
        return Lease(name, holder, now + self.length)

    def renew(self, lease: Lease) -> bool:
        """Extend ``lease`` by ``length`` if it is still this holder's; False if it is not."""
        t = self.table
        now = datetime.now(UTC)
        if lease.lost or lease.expires_at <= now:
            lease.lost = True
            return False
        with self.store.writing() as conn:
            renewed = conn.execute(
                update(t)
                .where(and_(t.c.name == lease.name, t.c.holder == lease.holder, t.c.expires_at > now))
                .values(expires_at=now + self.length)
            ).rowcount
        if renewed != 1:
            lease.lost = True
            return False
        lease.expires_at = now + self.length
        return True

    def release(self, lease: Lease) -> None:
        """Give ``lease`` back (nothing if it already went to another holder)."""
        t = self.table
        with self.store.writing() as conn:
            conn.execute(delete(t).where(and_(t.c.name == lease.name, t.c.holder == lease.holder)))

    async def _heartbeat(self, lease: Lease) -> None:
        interval = self.length.total_seconds() / 3
        while not lease.lost:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.renew, lease)
            except Exception:  # the database is away for a moment: try again until it expires
                if lease.expires_at <= datetime.now(UTC):
                    lease.lost = True

    @asynccontextmanager
    async def held(self, name: str, wait: float = 0.0) -> AsyncIterator[Lease]:
        """Hold the lease on ``name`` while the block runs, heartbeating it.

        With ``wait`` 0 a held lease is :class:`LeaseHeld` at once (the caller answers "busy");
        otherwise it is retried for up to ``wait`` seconds first (for short critical sections
        that should queue, like a seal). The block should :meth:`Lease.check` (or run its steps
        through :meth:`Lease.guard`) where stopping is still safe.
        """
        deadline = time.monotonic() + wait
        while True:
            try:
                lease = await asyncio.to_thread(self.acquire, name)
                break
            except LeaseHeld:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        beat = asyncio.create_task(self._heartbeat(lease), name=f"lease {name}")
        try:
            yield lease
        finally:
            beat.cancel()
            await asyncio.wait([beat])
            await asyncio.shield(asyncio.to_thread(self.release, lease))
