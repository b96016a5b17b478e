"""The harmoniser's job table: what is queued, running and finished survives a restart.

One row per run of a submission: its harmonisation at intake, keyed by the submission id (the
natural key), and each reanalysis campaign's run of it, keyed by submission and Sarek release
(:func:`job_key`), in the harmoniser's database
(``GENOMHUB_HARMONISER_DATABASE_URL``: PostgreSQL in production, shared by every replica; unset,
SQLite under the state folder), its schema in Alembic migrations
(``services/harmoniser/migrations``). A replayed validated event finds the row and changes
nothing; a finished job keeps the harmonised event it produced, so a replay re-emits exactly
that event instead of running Sarek again. The event is stored before it is sent and marked
sent after the broker acknowledged it, so a crash in between re-sends the same event (same
id) and never re-runs the pipeline.

Many replicas share the table. A replica claims a job (PostgreSQL ``FOR UPDATE SKIP LOCKED``,
SQLite under the write lock) and holds it by a lease: its owner id and the instant the lease
ends, which the owner's heartbeats push on. A job whose lease ended is its owner's no more:
any replica takes it over, exactly once, by an update conditional on the old owner and the
ended lease. Everything the owner writes afterwards (its pid, its outcome, a relaunch) is
conditional on still owning the job, so an owner that lost its lease, paused or cut off,
changes nothing and emits nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from shared.database import Store, UtcDateTime
from shared.database import replica_id as process_id

State = Literal["queued", "running", "succeeded", "failed"]
FINISHED: tuple[State, ...] = ("succeeded", "failed")

metadata = MetaData()
jobs = Table(
    "harmoniser_jobs",
    metadata,
    Column("job_key", String(128), primary_key=True),
    Column("submission_id", String(64), nullable=False),
    Column("sarek_version", String(32), comment="A campaign's release; none: the service's own, at intake."),
    Column("campaign_id", String(32), comment="The reanalysis campaign that asked for this run."),
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
    Column("owner", String(255)),
    Column("lease_expires_at", UtcDateTime()),
)
Index("harmoniser_jobs_by_state", jobs.c.state, jobs.c.created_at)  # what every claim looks up


def replica_id() -> str:
    """Who a replica is while it lives: the process (``shared.database.replica_id``: host and
    pid) and a random part, since a restarted container may be given the same pid on the same host."""
    return f"{process_id()}:{secrets.token_hex(4)}"


def host_of(owner: str) -> str:
    """The host part of a :func:`replica_id`: where the owner's processes can be seen."""
    return owner.partition(":")[0]


def pid_of(owner: str) -> int | None:
    """The pid part of a :func:`replica_id` (None if ``owner`` has none)."""
    pid = owner.split(":")[1:2]
    return int(pid[0]) if pid and pid[0].isdigit() else None


def job_key(submission_id: str, sarek_version: str | None = None) -> str:
    """A job's key: the submission id for its harmonisation at intake (what a replayed
    validated event finds), ``<submission>.sarek-<release>`` for a campaign's run of it."""
    return submission_id if sarek_version is None else f"{submission_id}.sarek-{sarek_version}"


@dataclass(frozen=True)
class Rerun:
    """What makes a job a campaign's run: the campaign and the Sarek release it asked for."""

    campaign_id: str
    sarek_version: str


@dataclass(frozen=True)
class Job:
    key: str
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
    owner: str | None
    lease_expires_at: datetime | None
    rerun: Rerun | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @staticmethod
    def of(row: RowMapping) -> Job:
        rerun = None
        if row["campaign_id"] is not None:
            rerun = Rerun(row["campaign_id"], row["sarek_version"])
        return Job(
            key=row["job_key"],
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
            owner=row["owner"],
            lease_expires_at=row["lease_expires_at"],
            rerun=rerun,
        )


def _now() -> datetime:
    return datetime.now(UTC)


MIGRATIONS = Path(__file__).parent / "migrations"


def _held_by(owner: str) -> ColumnElement[bool]:
    return jobs.c.owner == owner


def _lease_ended(now: datetime) -> ColumnElement[bool]:
    """No live lease: ended, or never given (a job left running by a harmoniser before leases)."""
    return or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at <= now)


def _owned_work() -> ColumnElement[bool]:
    """What an owner holds a lease on: a running job, or a finished one it has still to report."""
    return or_(jobs.c.state == "running", and_(jobs.c.state.in_(FINISHED), jobs.c.emitted.is_(False)))


class JobStore(Store):
    """Synchronous and small: callers on the event loop go through ``asyncio.to_thread``.

    Migrated when it opens (the harmoniser's start) and by ``genomhub db upgrade``. Its writes
    need no advisory lock: a claim locks the row it takes (``SKIP LOCKED`` lets other replicas
    pass it by), and every other write is an update conditional on the state or the owner it
    expects, so of two replicas racing for one change exactly one makes it.
    """

    SERVICE = "harmoniser"
    MIGRATIONS = MIGRATIONS

    def __init__(self, url: str) -> None:
        super().__init__(url, migrate=True)

    def get(self, key: str) -> Job | None:
        with self.reading() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_key == key)).mappings().first()
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
        rerun: Rerun | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job unless the submission has one (for ``rerun``'s release, if given);
        returns the job and whether it is new."""
        key = job_key(submission_id, rerun.sarek_version if rerun else None)
        now = _now()
        headers = json.dumps([(k, v.decode(errors="replace")) for k, v in trace_headers])
        try:
            with self.writing() as conn:
                conn.execute(
                    insert(jobs).values(
                        job_key=key,
                        submission_id=submission_id,
                        sarek_version=rerun.sarek_version if rerun else None,
                        campaign_id=rerun.campaign_id if rerun else None,
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
        job = self.get(key)
        assert job is not None
        return job, created

    def claim(self, owner: str, lease: float) -> Job | None:
        """Take the oldest queued job that is due for ``owner``: it becomes running, with one
        more attempt and a lease of ``lease`` seconds.

        One transaction: on PostgreSQL the row is locked as it is read, and a replica claiming
        at the same moment skips it for the next one instead of waiting; on SQLite the write
        lock (``BEGIN IMMEDIATE``) is held from the read to the update, and SQLAlchemy renders
        no ``FOR UPDATE`` there.
        """
        with self.writing() as conn:
            taken = conn.execute(
                select(jobs.c.job_key)
                .where(jobs.c.state == "queued", jobs.c.not_before <= time.time())
                .order_by(jobs.c.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).scalar()
            if taken is None:
                return None
            now = _now()
            conn.execute(
                update(jobs)
                .where(jobs.c.job_key == taken, jobs.c.state == "queued")
                .values(
                    state="running",
                    attempts=jobs.c.attempts + 1,
                    owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease),
                    pgid=None,
                    updated_at=now,
                )
            )
            row = conn.execute(select(jobs).where(jobs.c.job_key == taken)).mappings().one()
        return Job.of(row)

    def _set_if_held(self, key: str, holder: str, **values: Any) -> bool:
        """Change a job only while ``holder`` owns it; False: the job is another replica's now."""
        with self.writing() as conn:
            changed = conn.execute(
                update(jobs)
                .where(jobs.c.job_key == key, _held_by(holder))
                .values(updated_at=_now(), **values)
            )
        return changed.rowcount == 1

    def heartbeat(self, key: str, owner: str, lease: float) -> bool:
        """Push the lease on by ``lease`` seconds from now; False: ``owner`` lost the job."""
        return self._set_if_held(key, owner, lease_expires_at=_now() + timedelta(seconds=lease))

    def set_pgid(self, key: str, owner: str, pgid: int | None) -> bool:
        return self._set_if_held(key, owner, pgid=pgid)

    def retry_later(self, key: str, owner: str, delay: float, log_tail: str) -> bool:
        return self._set_if_held(
            key,
            owner,
            state="queued",
            not_before=time.time() + delay,
            log_tail=log_tail,
            pgid=None,
            owner=None,
            lease_expires_at=None,
        )

    def release(self, key: str, owner: str) -> bool:
        """Give a running job back to the queue (its owner is stopping): due at once, for any replica."""
        with self.writing() as conn:
            changed = conn.execute(
                update(jobs)
                .where(jobs.c.job_key == key, _held_by(owner), jobs.c.state == "running")
                .values(
                    state="queued",
                    not_before=0.0,
                    pgid=None,
                    owner=None,
                    lease_expires_at=None,
                    updated_at=_now(),
                )
            )
        return changed.rowcount == 1

    def finish(self, key: str, owner: str, state: State, result: str, log_tail: str = "") -> bool:
        """Store the outcome and the event that reports it, not yet sent; the owner keeps its
        lease until the event is sent. False: the job is no longer ``owner``'s, nothing stored."""
        return self._set_if_held(
            key, owner, state=state, result=result, emitted=False, log_tail=log_tail, pgid=None
        )

    def mark_emitted(self, key: str) -> None:
        """The broker acknowledged the event: nothing is left to hold a lease on."""
        with self.writing() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.job_key == key)
                .values(emitted=True, owner=None, lease_expires_at=None, updated_at=_now())
            )

    def unemitted(self) -> list[Job]:
        with self.reading() as conn:
            rows = (
                conn.execute(select(jobs).where(jobs.c.state.in_(FINISHED), jobs.c.emitted.is_(False)))
                .mappings()
                .all()
            )
        return [Job.of(r) for r in rows]

    def expired(self) -> list[Job]:
        """Jobs whose owner's lease ended: running ones, and finished ones not yet reported."""
        with self.reading() as conn:
            rows = conn.execute(select(jobs).where(_owned_work(), _lease_ended(_now()))).mappings().all()
        return [Job.of(r) for r in rows]

    def held(self) -> list[Job]:
        """Jobs some owner holds now, its lease running or not."""
        with self.reading() as conn:
            rows = conn.execute(select(jobs).where(_owned_work(), jobs.c.owner.is_not(None))).mappings().all()
        return [Job.of(r) for r in rows]

    def take_over(self, job: Job, owner: str, lease: float, *, owner_gone: bool = False) -> bool:
        """Take ``job`` from its old owner, whose lease ended; True for exactly one taker.

        A running job goes back to the queue, due at once (its next claim counts the attempt);
        a finished one not yet reported becomes ``owner``'s to report. The update is
        conditional on the owner ``job`` was read with and on the lease still being over, so
        a heartbeat of the old owner in between, or another replica's take-over, wins.
        ``owner_gone``: the caller saw that the old owner's process is dead, so its lease is
        not waited out (the condition on the old owner still makes one taker win).
        """
        now = _now()
        old = jobs.c.owner.is_(None) if job.owner is None else _held_by(job.owner)
        values: dict[str, Any]
        if job.state == "running":
            values = {
                "state": "queued",
                "not_before": 0.0,
                "pgid": None,
                "owner": None,
                "lease_expires_at": None,
            }
        else:
            values = {"owner": owner, "lease_expires_at": now + timedelta(seconds=lease)}
        with self.writing() as conn:
            changed = conn.execute(
                update(jobs)
                .where(
                    jobs.c.job_key == job.key,
                    jobs.c.state == job.state,
                    old,
                    _owned_work(),
                    true() if owner_gone else _lease_ended(now),
                )
                .values(updated_at=now, **values)
            )
        return changed.rowcount == 1

    def counts(self) -> dict[str, int]:
        counts = {"queued": 0, "running": 0, "succeeded": 0, "failed": 0}
        for job in self.all():
            counts[job.state] += 1
        return counts
