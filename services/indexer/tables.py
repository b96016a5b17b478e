"""The catalogue's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Times are :class:`shared.database.UtcDateTime` (UTC with its zone: ``timestamptz`` on
PostgreSQL, migration 0004), so that comparisons and keyset cursors behave alike on both
databases and every time read back is aware; genome equivalents as integer millionths (exact sums on SQLite too). Table names
start with ``catalogue_`` because services may share one database.

A sample is (region, sample pseudonym): pseudonyms are the regions' own, so every key,
index and lookup of a sample holds both (migration 0003).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from shared.database import UtcDateTime

metadata = MetaData()

events = Table(
    "catalogue_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("submission_id", String(64), nullable=False),
    Column("sample_id", String(128), nullable=False),
    Column("region", String(32), nullable=False),
    Column("type", String(32), nullable=False),
    Column("time", UtcDateTime(), nullable=False),
    Column("source", String(255), nullable=False),
    Column("trace_id", String(32)),
    Column("summary", String(255), nullable=False),
    Column("data", Text, nullable=False, comment="The event's JSON data, as consumed."),
    Index("ix_catalogue_events_submission", "submission_id", "time"),
)

submissions = Table(
    "catalogue_submissions",
    metadata,
    Column("submission_id", String(64), primary_key=True),
    Column("sample_id", String(128), nullable=False),
    Column("region", String(32), nullable=False),
    Column("department", String(128), nullable=False),
    Column("patient_id", String(128), nullable=False),
    Column("analysis_type", String(32), nullable=False),
    Column("platform", String(64), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("received_month", String(7), nullable=False),
    Column("verdict", String(16)),
    Column("status", String(32)),
    Column("accepted", Boolean),
    Column("ge_micro", BigInteger),
    Column("raw_bases", BigInteger),
    Column("raw_reads", BigInteger),
    Column("reference_profile", String(64)),
    Column("policy", String(32)),
    Column("pipeline", String(128)),
    Column("pipeline_version", String(64)),
    Column("reference", String(128)),
    Column("attempts", Integer),
    Column("trace_id", String(32)),
    Column("first_event_at", UtcDateTime(), nullable=False),
    Column("last_event_at", UtcDateTime(), nullable=False),
    Index("ix_catalogue_submissions_sample", "region", "sample_id"),
)

samples = Table(
    "catalogue_samples",
    metadata,
    Column("region", String(32), primary_key=True),
    Column("sample_id", String(128), primary_key=True),
    Column(
        "submission_id",
        String(64),
        ForeignKey("catalogue_submissions.submission_id"),
        nullable=False,
        comment="The submission the row shows: the newest received one with an outcome.",
    ),
    Column("department", String(128), nullable=False),
    Column("patient_id", String(128), nullable=False),
    Column("analysis_type", String(32), nullable=False),
    Column("platform", String(64), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("received_month", String(7), nullable=False),
    Column("status", String(32), nullable=False),
    Column("accepted", Boolean, nullable=False),
    Column("ge_micro", BigInteger, nullable=False),
    Column("files", Integer, nullable=False),
    Column("submissions", Integer, nullable=False),
    Column("trace_id", String(32)),
    Column("updated_at", UtcDateTime(), nullable=False, comment="Time of the newest event behind the row."),
    Column("search", Text, nullable=False, comment="Lowercased ids, pseudonyms, department, platform."),
    Index("ix_catalogue_samples_received", "received_at", "region", "sample_id"),
    Index("ix_catalogue_samples_region", "region", "received_at", "sample_id"),
    Index("ix_catalogue_samples_status", "status", "received_at", "region", "sample_id"),
    Index("ix_catalogue_samples_analysis", "analysis_type", "received_at", "region", "sample_id"),
    Index("ix_catalogue_samples_stats", "region", "received_month", "status", "ge_micro"),
)

files = Table(
    "catalogue_files",
    metadata,
    Column(
        "submission_id",
        String(64),
        ForeignKey("catalogue_submissions.submission_id"),
        primary_key=True,
    ),
    Column("role", String(32), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("sample_id", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("url", Text, nullable=False, comment="Internal location, without credentials."),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("md5", String(32)),
    Column("tier", String(8), nullable=False, comment="hot, warm or tape; set hot on first sight."),
    Column("recall_id", String(32), comment="The last recall from tape, if any."),
    Column("recall_state", String(16), comment="SUBMITTED, STARTED, COMPLETED, FAILED, CANCELLED."),
    Column(
        "recall_expected_at",
        UtcDateTime(),
        comment="While a recall is under way: the archive's estimate of when it is staged.",
    ),
    Column("accepted", Boolean),
    Column("conforms", Boolean),
    Column("metrics", JSON, nullable=False),
    Column("problems", JSON, nullable=False),
    Column("provenance", String(255)),
    Column("event_id", String(64), nullable=False),
    Column("trace_id", String(32)),
    Index("ix_catalogue_files_sample", "region", "sample_id"),
)

placements = Table(
    "catalogue_placements",
    metadata,
    Column("region", String(32), primary_key=True),
    Column("sample_id", String(128), primary_key=True),
    Column("path", Text, primary_key=True, comment="The body's path relative to the archive root."),
    Column("tier", String(8), comment="hot, warm or tape, as the last tier-moved said."),
    Column("recall_id", String(32)),
    Column("recall_state", String(16)),
    Column("recall_expected_at", UtcDateTime()),
    comment="Where the archive said each body is, kept apart from the files so that a move or "
    "recall told before the catalogue knows the file (a replay reads the topics in any order) "
    "is applied once it does.",
)
