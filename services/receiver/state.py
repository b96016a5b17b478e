"""The receiver's durable state: submissions, their declared files, and what has arrived.

Kept relationally (SQLite embedded, PostgreSQL in production, on ``shared.database.Store``)
rather than as JSON beside the files, because the receiver needs what a file store cannot
give cheaply: a transaction around "this file is complete" and "the submission is sealed",
a unique idempotency key, and an indexed lookup of a sample's files by sha256 (so that a
byte-identical re-upload points at the copy already archived). Several receiver replicas can
share one PostgreSQL database. The bytes of a file in transit are not here: the partial
object in the archive is the truth about how much arrived, so a crash can never make the
database claim more than the archive holds. On S3 the exception is a file in transit: S3 cannot
read back the parts of an unfinished multipart upload, so the upload's id and the parts S3
acknowledged are kept here, each part recorded only after S3 acknowledged it (the database
never claims a byte S3 does not hold), and any replica resumes the upload from them.

Methods are synchronous; the API calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from services.receiver.metadata import NewSubmission
from shared.database import NamedLeases, Store, UtcDateTime, lease_table
from shared.events import FileRole, StoredFile, Submission
from shared.storage import MultipartUpload, StoredObject, UploadedPart

MIGRATIONS = Path(__file__).parent / "migrations"
metadata = MetaData()

submissions = Table(
    "receiver_submissions",
    metadata,
    Column("submission_id", String(64), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("department", String(128), nullable=False),
    Column("sample_id", String(128), nullable=False),
    Column("patient_id", String(128), nullable=False),
    Column("analysis_type", String(32), nullable=False),
    Column("platform", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(32), nullable=False),
    Column("idempotency_key", String(128), nullable=True),
    Column("request_sha256", String(64), nullable=True),
    Column("traceparent", String(128), nullable=True),
    Column("sealed_at", UtcDateTime(), nullable=True),
    Column("event_id", String(64), nullable=True),
    Column("emitted_at", UtcDateTime(), nullable=True),
    Index("ix_receiver_submissions_key", "created_by", "idempotency_key", unique=True),
    Index("ix_receiver_submissions_sample", "region", "sample_id"),
)

files = Table(
    "receiver_files",
    metadata,
    Column(
        "submission_id",
        String(64),
        ForeignKey("receiver_submissions.submission_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(255), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("declared_sha256", String(64), nullable=True),
    Column("url", String(2048), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("md5", String(32), nullable=True),
    Column("completed_at", UtcDateTime(), nullable=True),
    Index("ix_receiver_files_sha256", "sha256"),
)

leases = lease_table(metadata, "receiver")
"""Who is writing a file (named ``<submission>/<file>``) or sealing a submission
(``<submission>//seal``: a file name cannot hold a '/'), across the receiver's replicas."""

uploads = Table(
    "receiver_uploads",
    metadata,
    Column("submission_id", String(64), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("upload_id", String(1024), nullable=False, unique=True),
    Column("url", String(2048), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    ForeignKeyConstraint(
        ["submission_id", "name"], ["receiver_files.submission_id", "receiver_files.name"], ondelete="CASCADE"
    ),
)
"""An S3 file in transit: the multipart upload its bytes go into (see ``archive.PartialUpload``)."""

upload_parts = Table(
    "receiver_upload_parts",
    metadata,
    Column(
        "upload_id",
        String(1024),
        ForeignKey("receiver_uploads.upload_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("part_number", Integer, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("etag", String(128), nullable=False),
)
"""The parts S3 acknowledged: their sum is how much of the file arrived."""


class IdempotencyKeyReused(Exception):
    """An idempotency key already opened a submission with other metadata."""


def request_digest(meta: NewSubmission) -> str:
    """sha256 of the submission's canonical metadata (sorted keys, defaults filled in).

    What the key stands for is the metadata, not its spelling: the same fields in another
    order or with other whitespace are the same request; any changed value is another.
    """
    canonical = json.dumps(meta.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class FileState:
    name: str
    role: FileRole
    declared_sha256: str | None
    url: str | None
    size: int | None
    sha256: str | None
    md5: str | None

    @property
    def complete(self) -> bool:
        return self.url is not None

    def stored(self) -> StoredFile:
        if not self.complete:
            raise ValueError(f"{self.name} has not arrived")
        return StoredFile(
            name=self.name,
            role=self.role,
            url=str(self.url),
            size=int(self.size or 0),
            sha256=str(self.sha256),
            md5=str(self.md5),
        )


@dataclass(frozen=True)
class SubmissionState:
    submission_id: str
    region: str
    department: str
    sample_id: str
    patient_id: str
    analysis_type: str
    platform: str
    created_at: datetime
    traceparent: str | None
    sealed_at: datetime | None
    event_id: str | None
    emitted_at: datetime | None
    files: tuple[FileState, ...]

    def file(self, name: str) -> FileState | None:
        return next((f for f in self.files if f.name == name), None)

    def submission(self) -> Submission:
        """The event's view of the submission; received means sealed."""
        if self.sealed_at is None:
            raise ValueError("a submission is received when it is sealed")
        return Submission.model_validate(
            {
                "submission_id": self.submission_id,
                "region": self.region,
                "department": self.department,
                "sample_id": self.sample_id,
                "patient_id": self.patient_id,
                "analysis_type": self.analysis_type,
                "platform": self.platform,
                "received_at": self.sealed_at,
            }
        )


class SubmissionStore(Store):
    """Submissions in a SQLAlchemy database, migrated by Alembic on open (the receiver's start).

    Its writes need no advisory lock on PostgreSQL: the idempotency key's unique index and
    the conditional seal keep concurrent replicas apart. What must not run twice at once, a
    file's upload and a submission's seal, is held as a named lease (:attr:`leases`, of
    ``lease_length``) in the same database, so replicas behind one Service exclude each other.
    """

    SERVICE = "receiver"
    MIGRATIONS = MIGRATIONS

    def __init__(self, url: str, lease_length: timedelta = timedelta(seconds=30)) -> None:
        super().__init__(url, migrate=True)
        self.leases = NamedLeases(self, leases, lease_length)

    def close(self) -> None:
        self.dispose()

    def create(
        self,
        submission_id: str,
        meta: NewSubmission,
        created_by: str,
        idempotency_key: str | None,
        traceparent: str | None,
    ) -> tuple[SubmissionState, bool]:
        """Insert a submission; with a known idempotency key, the one made before (and False).

        :class:`IdempotencyKeyReused` if that key opened a submission with other metadata.
        """
        digest = request_digest(meta)
        if idempotency_key is not None:
            earlier = self._by_key(created_by, idempotency_key, digest)
            if earlier is not None:
                return earlier, False
        row = {
            "submission_id": submission_id,
            "region": meta.region.value,
            "department": meta.department,
            "sample_id": meta.sample_id,
            "patient_id": meta.patient_id,
            "analysis_type": meta.analysis_type.value,
            "platform": meta.platform,
            "created_at": datetime.now(UTC),
            "created_by": created_by,
            "idempotency_key": idempotency_key,
            "request_sha256": digest,
            "traceparent": traceparent,
        }
        try:
            with self.writing() as conn:
                conn.execute(insert(submissions).values(**row))
                conn.execute(
                    insert(files),
                    [
                        {
                            "submission_id": submission_id,
                            "name": f.name,
                            "role": f.role.value,
                            "declared_sha256": f.sha256,
                        }
                        for f in meta.files
                    ],
                )
        except IntegrityError:
            if idempotency_key is None:
                raise
            earlier = self._by_key(created_by, idempotency_key, digest)  # a concurrent twin won
            if earlier is None:
                raise
            return earlier, False
        state = self.get(submission_id)
        assert state is not None
        return state, True

    def _by_key(self, created_by: str, key: str, digest: str) -> SubmissionState | None:
        """The submission ``key`` opened, if the metadata hashes to ``digest``.

        A row from before the hash was kept (``request_sha256`` null) is taken as matching:
        what it was opened with cannot be told any more.
        """
        with self.reading() as conn:
            found = conn.execute(
                select(submissions.c.submission_id, submissions.c.request_sha256).where(
                    and_(submissions.c.created_by == created_by, submissions.c.idempotency_key == key)
                )
            ).first()
        if found is None:
            return None
        if found.request_sha256 is not None and found.request_sha256 != digest:
            raise IdempotencyKeyReused(key)
        return self.get(found.submission_id)

    def get(self, submission_id: str) -> SubmissionState | None:
        with self.reading() as conn:
            sub = (
                conn.execute(select(submissions).where(submissions.c.submission_id == submission_id))
                .mappings()
                .first()
            )
            if sub is None:
                return None
            rows = (
                conn.execute(
                    select(files).where(files.c.submission_id == submission_id).order_by(files.c.name)
                )
                .mappings()
                .all()
            )
        return SubmissionState(
            submission_id=sub["submission_id"],
            region=sub["region"],
            department=sub["department"],
            sample_id=sub["sample_id"],
            patient_id=sub["patient_id"],
            analysis_type=sub["analysis_type"],
            platform=sub["platform"],
            created_at=sub["created_at"],
            traceparent=sub["traceparent"],
            sealed_at=sub["sealed_at"],
            event_id=sub["event_id"],
            emitted_at=sub["emitted_at"],
            files=tuple(
                FileState(
                    name=r["name"],
                    role=FileRole(r["role"]),
                    declared_sha256=r["declared_sha256"],
                    url=r["url"],
                    size=r["size"],
                    sha256=r["sha256"],
                    md5=r["md5"],
                )
                for r in rows
            ),
        )

    def copy_in_sample(self, region: str, sample_id: str, sha256: str) -> StoredObject | None:
        """A file of this sample already archived with these exact bytes, if there is one."""
        with self.reading() as conn:
            row = conn.execute(
                select(files.c.url, files.c.size, files.c.sha256, files.c.md5)
                .join(submissions, submissions.c.submission_id == files.c.submission_id)
                .where(
                    and_(
                        submissions.c.region == region,
                        submissions.c.sample_id == sample_id,
                        files.c.sha256 == sha256,
                        files.c.url.is_not(None),
                    )
                )
                .order_by(files.c.completed_at)
                .limit(1)
            ).first()
        return None if row is None else StoredObject(row.url, row.size, row.sha256, row.md5)

    def archived_files(self) -> list[StoredObject]:
        """Every file the archive holds, with the plaintext size and digests recorded at intake,
        in a stable order (the archive's own checks and migrations resume along it)."""
        with self.reading() as conn:
            rows = conn.execute(
                select(files.c.url, files.c.size, files.c.sha256, files.c.md5)
                .where(files.c.url.is_not(None), files.c.completed_at.is_not(None))
                .distinct()
                .order_by(files.c.url)
            ).all()
        return [StoredObject(r.url, r.size, r.sha256, r.md5) for r in rows]

    def complete_file(self, submission_id: str, stored: StoredFile) -> None:
        """Record that ``stored`` has arrived whole (idempotent for the same bytes)."""
        with self.writing() as conn:
            conn.execute(
                update(files)
                .where(and_(files.c.submission_id == submission_id, files.c.name == stored.name))
                .values(
                    url=stored.url,
                    size=stored.size,
                    sha256=stored.sha256,
                    md5=stored.md5,
                    completed_at=datetime.now(UTC),
                )
            )

    def seal(self, submission_id: str, event_id: str) -> SubmissionState:
        """Seal once: the first seal's time is the submission's receipt time for good."""
        with self.writing() as conn:
            conn.execute(
                update(submissions)
                .where(and_(submissions.c.submission_id == submission_id, submissions.c.sealed_at.is_(None)))
                .values(sealed_at=datetime.now(UTC), event_id=event_id)
            )
        state = self.get(submission_id)
        assert state is not None
        return state

    def mark_emitted(self, submission_id: str) -> None:
        with self.writing() as conn:
            conn.execute(
                update(submissions)
                .where(submissions.c.submission_id == submission_id)
                .values(emitted_at=datetime.now(UTC))
            )

    def sealed_not_emitted(self) -> list[str]:
        """Submissions sealed whose event may not have reached the broker (a crash in between)."""
        with self.reading() as conn:
            return list(
                conn.execute(
                    select(submissions.c.submission_id).where(
                        and_(submissions.c.sealed_at.is_not(None), submissions.c.emitted_at.is_(None))
                    )
                ).scalars()
            )

    # -- S3 uploads in transit -----------------------------------------------------------
    def upload_in_transit(self, submission_id: str, name: str) -> MultipartUpload | None:
        """The file's multipart upload and its acknowledged parts, in order; None when none."""
        with self.reading() as conn:
            upload = conn.execute(
                select(uploads.c.upload_id, uploads.c.url).where(
                    and_(uploads.c.submission_id == submission_id, uploads.c.name == name)
                )
            ).first()
            if upload is None:
                return None
            rows = conn.execute(
                select(upload_parts.c.part_number, upload_parts.c.size, upload_parts.c.etag)
                .where(upload_parts.c.upload_id == upload.upload_id)
                .order_by(upload_parts.c.part_number)
            ).all()
        parts = tuple(UploadedPart(r.part_number, r.size, r.etag) for r in rows)
        return MultipartUpload(upload.url, upload.upload_id, parts)

    def upload_started(self, submission_id: str, name: str, url: str, upload_id: str) -> None:
        """Record the file's new multipart upload to ``url`` (the caller aborted any earlier one)."""
        with self.writing() as conn:
            self._forget_upload(conn, submission_id, name)
            conn.execute(
                insert(uploads).values(
                    submission_id=submission_id,
                    name=name,
                    upload_id=upload_id,
                    url=url,
                    started_at=datetime.now(UTC),
                )
            )

    def part_stored(self, upload_id: str, part: UploadedPart) -> None:
        """Record a part S3 acknowledged; a part number sent again replaces its earlier record."""
        with self.writing() as conn:
            conn.execute(
                delete(upload_parts).where(
                    and_(upload_parts.c.upload_id == upload_id, upload_parts.c.part_number == part.number)
                )
            )
            conn.execute(
                insert(upload_parts).values(
                    upload_id=upload_id, part_number=part.number, size=part.size, etag=part.etag
                )
            )

    def upload_ended(self, submission_id: str, name: str) -> None:
        """Forget the file's multipart upload: completed, or aborted in S3."""
        with self.writing() as conn:
            self._forget_upload(conn, submission_id, name)

    @staticmethod
    def _forget_upload(conn: Connection, submission_id: str, name: str) -> None:
        upload_id = conn.execute(
            select(uploads.c.upload_id).where(
                and_(uploads.c.submission_id == submission_id, uploads.c.name == name)
            )
        ).scalar()
        if upload_id is not None:
            conn.execute(delete(upload_parts).where(upload_parts.c.upload_id == upload_id))
            conn.execute(delete(uploads).where(uploads.c.upload_id == upload_id))
