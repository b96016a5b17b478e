"""Relational state of the services that keep some (the catalogue, billing's ledger).

SQLAlchemy 2 engines over SQLite (the embedded default, a file under GENOMHUB_HOME) or
PostgreSQL (production), and Alembic migrations kept in ``services/<name>/migrations``. Each
service versions its schema in its own table, so services may share one database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, create_engine, event, text


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
