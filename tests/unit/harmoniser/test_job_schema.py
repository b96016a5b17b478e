"""The job queue's schema is Alembic's: a new queue is migrated, one made by ``create_all`` is adopted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)

from services.cli import main
from services.harmoniser.jobs import JobStore, metadata
from shared.database import make_engine


def queue_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'harmoniser' / 'jobs.sqlite'}"


def _version(store: JobStore) -> str:
    with store.engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version_harmoniser")).scalar_one())


def _schema_differences(store: JobStore) -> list[object]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_harmoniser"})
        return list(compare_metadata(context, metadata))


def test_a_new_queue_is_migrated_to_the_declared_schema_and_reopens_harmlessly(tmp_path: Path) -> None:
    store = JobStore(queue_url(tmp_path))
    assert _version(store) == "0003" and _schema_differences(store) == []
    store.enqueue("s1", "c1", "e1", "{}", [])
    store.dispose()
    again = JobStore(queue_url(tmp_path))
    try:
        assert _version(again) == "0003" and [j.submission_id for j in again.all()] == ["s1"]
    finally:
        again.dispose()


def test_a_queue_made_by_create_all_is_adopted_with_its_jobs(tmp_path: Path) -> None:
    """The table as the harmoniser created it before migrations, written out here as it was."""
    old = MetaData()
    jobs = Table(
        "harmoniser_jobs",
        old,
        Column("submission_id", String(64), primary_key=True),
        Column("cause_id", String(64), nullable=False),
        Column("event_id", String(64), nullable=False),
        Column("state", String(16), nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
        Column("request", Text, nullable=False),
        Column("trace_headers", Text, nullable=False),
        Column("result", Text),
        Column("emitted", Boolean, nullable=False, default=False),
        Column("log_tail", Text, nullable=False, default=""),
        Column("pgid", Integer),
        Column("not_before", Float, nullable=False, default=0.0),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    queued = datetime(2026, 11, 30, 8, 15, tzinfo=UTC)
    engine = make_engine(queue_url(tmp_path))
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            jobs.insert(),
            {
                "submission_id": "s-old",
                "cause_id": "c",
                "event_id": "e",
                "state": "queued",
                "request": "{}",
                "trace_headers": "[]",
                "created_at": queued,
                "updated_at": queued,
            },
        )
    assert "alembic_version_harmoniser" not in inspect(engine).get_table_names()
    engine.dispose()

    store = JobStore(queue_url(tmp_path))
    try:
        assert _version(store) == "0003" and _schema_differences(store) == []
        job = store.get("s-old")
        assert job is not None and job.state == "queued"
        assert job.created_at == queued and job.created_at.tzinfo is UTC
        claimed = store.claim("replica-a", 60.0)
        assert claimed is not None and claimed.submission_id == "s-old" and claimed.attempts == 1
    finally:
        store.dispose()


def test_db_upgrade_migrates_the_job_queue_at_its_configured_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue replicas share is migrated by the one migration Job, before any replica starts."""
    url = f"sqlite:///{tmp_path / 'shared-queue.sqlite'}"
    monkeypatch.setenv("GENOMHUB_HARMONISER_DATABASE_URL", url)
    done = CliRunner().invoke(main, ["db", "upgrade", "--service", "harmoniser"])
    assert done.exit_code == 0, done.output
    assert done.output == "harmoniser: schema at head\n"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT version_num FROM alembic_version_harmoniser")).scalar_one()
                == "0003"
            )
        assert {"owner", "lease_expires_at"} <= {
            c["name"] for c in inspect(engine).get_columns("harmoniser_jobs")
        }
    finally:
        engine.dispose()
