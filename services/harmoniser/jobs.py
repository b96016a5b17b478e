"""The harmoniser's job table: what is queued, running and finished survives a restart.

One row per submission (the natural key), in SQLite under the state folder, its schema in
Alembic migrations (``services/harmoniser/migrations``) applied when the store opens. A replayed
validated event finds the row and changes nothing; a finished job keeps the harmonised event
it produced, so a replay re-emits exactly that event instead of running Sarek again. The
event is stored before it is sent and marked sent after the broker acknowledged it, so a
crash in between re-sends the same event (same id) and never re-runs the pipeline.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from shared.database import Store, UtcDateTime

State = Literal["queued", "running", "succeeded", "failed"]
FINISHED: tuple[State, ...] = ("succeeded", "failed")

metadata = MetaData()
jobs = Table(
    "harmoniser_jobs",
    metadata,
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
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True)
class Job:
    submission_id: str
    cause_id: str
    event_id: str
    state: State
    attempts: int
    request: str
    trace_headers: list[tuple[str, bytes]]
    result: str | None
    emitted: bool
    log_tail: str
    pgid: int | None
    created_at: datetime
    updated_at: datetime

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @staticmethod
    def of(row: RowMapping) -> Job:
        return Job(
            submission_id=row["submission_id"],
            cause_id=row["cause_id"],
            event_id=row["event_id"],
            state=row["state"],
            attempts=row["attempts"],
            request=row["request"],
            trace_headers=[(k, v.encode()) for k, v in json.loads(row["trace_headers"])],
            result=row["result"],
            emitted=bool(row["emitted"]),
            log_tail=row["log_tail"],
            pgid=row["pgid"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


def _now() -> datetime:
    return datetime.now(UTC)


MIGRATIONS = Path(__file__).parent / "migrations"


def queue_url(state_dir: Path) -> str:
    """Where the job queue lives: beside the run folders, on the harmoniser's own volume."""
    return f"sqlite:///{state_dir / 'harmoniser' / 'jobs.sqlite'}"


class JobStore(Store):
    """Synchronous and small: callers on the event loop go through ``asyncio.to_thread``.

    Migrated when it opens (the harmoniser's start): the queue is a file on the harmoniser's
    own volume, which no migration Job elsewhere can reach. Its writes need no advisory lock:
    a job is claimed by a conditional update, taken only if it is still queued.
    """

    SERVICE = "harmoniser"
    MIGRATIONS = MIGRATIONS

    def __init__(self, url: str) -> None:
        super().__init__(url, migrate=True)

    @classmethod
    def under(cls, state_dir: Path) -> JobStore:
        return cls(queue_url(state_dir))

    def get(self, submission_id: str) -> Job | None:
        with self.reading() as conn:
            row = conn.execute(select(jobs).where(jobs.c.submission_id == submission_id)).mappings().first()
        return Job.of(row) if row else None

    def all(self) -> list[Job]:
        with self.reading() as conn:
            rows = conn.execute(select(jobs).order_by(jobs.c.created_at)).mappings().all()
        return [Job.of(r) for r in rows]

    def enqueue(
        self,
        submission_id: str,
        cause_id: str,
        event_id: str,
        request: str,
        trace_headers: list[tuple[str, bytes]],
    ) -> tuple[Job, bool]:
        """Queue a job unless the submission has one; returns the job and whether it is new."""
        now = _now()
        headers = json.dumps([(k, v.decode(errors="replace")) for k, v in trace_headers])
        try:
            with self.writing() as conn:
                conn.execute(
                    insert(jobs).values(
                        submission_id=submission_id,
                        cause_id=cause_id,
                        event_id=event_id,
                        state="queued",
                        attempts=0,
                        request=request,
                        trace_headers=headers,
                        emitted=False,
                        log_tail="",
                        not_before=0.0,
                        created_at=now,
                        updated_at=now,
                    )
                )
            created = True
        except IntegrityError:
            created = False
        job = self.get(submission_id)
        assert job is not None
        return job, created

    def claim(self) -> Job | None:
        """Take the oldest queued job that is due: it becomes running, with one more attempt."""
        with self.writing() as conn:
            row = (
                conn.execute(
                    select(jobs)
                    .where(jobs.c.state == "queued", jobs.c.not_before <= time.time())
                    .order_by(jobs.c.created_at)
                    .limit(1)
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            taken = conn.execute(
                update(jobs)
                .where(jobs.c.submission_id == row["submission_id"], jobs.c.state == "queued")
                .values(state="running", attempts=jobs.c.attempts + 1, updated_at=_now())
            )
            if taken.rowcount != 1:
                return None
        return self.get(row["submission_id"])

    def _set(self, submission_id: str, **values: Any) -> None:
        with self.writing() as conn:
            conn.execute(
                update(jobs).where(jobs.c.submission_id == submission_id).values(updated_at=_now(), **values)
            )

    def set_pgid(self, submission_id: str, pgid: int | None) -> None:
        self._set(submission_id, pgid=pgid)

    def retry_later(self, submission_id: str, delay: float, log_tail: str) -> None:
        self._set(submission_id, state="queued", not_before=time.time() + delay, log_tail=log_tail, pgid=None)

    def finish(self, submission_id: str, state: State, result: str, log_tail: str = "") -> None:
        """Store the outcome and the event that reports it, not yet sent."""
        self._set(submission_id, state=state, result=result, emitted=False, log_tail=log_tail, pgid=None)

    def mark_emitted(self, submission_id: str) -> None:
        self._set(submission_id, emitted=True)

    def unemitted(self) -> list[Job]:
        with self.reading() as conn:
            rows = (
                conn.execute(select(jobs).where(jobs.c.state.in_(FINISHED), jobs.c.emitted.is_(False)))
                .mappings()
                .all()
            )
        return [Job.of(r) for r in rows]

    def interrupted(self) -> list[Job]:
        """Jobs left running by a previous process: after a restart none can really be running."""
        with self.reading() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.state == "running")).mappings().all()
        return [Job.of(r) for r in rows]

    def requeue(self, submission_id: str) -> None:
        self._set(submission_id, state="queued", not_before=0.0, pgid=None)

    def counts(self) -> dict[str, int]:
        counts = {"queued": 0, "running": 0, "succeeded": 0, "failed": 0}
        for job in self.all():
            counts[job.state] += 1
        return counts
