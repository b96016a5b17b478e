"""The catalogue: events (the timeline), submissions, samples and files.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalogue_events",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("sample_id", sa.String(128), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("summary", sa.String(255), nullable=False),
        sa.Column("data", sa.Text(), nullable=False, comment="The event's JSON data, as consumed."),
    )
    op.create_index("ix_catalogue_events_submission", "catalogue_events", ["submission_id", "time"])

    op.create_table(
        "catalogue_submissions",
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("sample_id", sa.String(128), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("department", sa.String(128), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("analysis_type", sa.String(32), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("received_month", sa.String(7), nullable=False),
        sa.Column("verdict", sa.String(16)),
        sa.Column("status", sa.String(32)),
        sa.Column("accepted", sa.Boolean()),
        sa.Column("ge_micro", sa.BigInteger()),
        sa.Column("raw_bases", sa.BigInteger()),
        sa.Column("raw_reads", sa.BigInteger()),
        sa.Column("reference_profile", sa.String(64)),
        sa.Column("policy", sa.String(32)),
        sa.Column("pipeline", sa.String(128)),
        sa.Column("pipeline_version", sa.String(64)),
        sa.Column("reference", sa.String(128)),
        sa.Column("attempts", sa.Integer()),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("first_event_at", sa.DateTime(), nullable=False),
        sa.Column("last_event_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_catalogue_submissions_sample", "catalogue_submissions", ["sample_id"])

    op.create_table(
        "catalogue_samples",
        sa.Column("sample_id", sa.String(128), primary_key=True),
        sa.Column(
            "submission_id",
            sa.String(64),
            sa.ForeignKey("catalogue_submissions.submission_id"),
            nullable=False,
            comment="The submission the row shows: the newest received one with an outcome.",
        ),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("department", sa.String(128), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("analysis_type", sa.String(32), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("received_month", sa.String(7), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("ge_micro", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("submissions", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column(
            "updated_at", sa.DateTime(), nullable=False, comment="Time of the newest event behind the row."
        ),
        sa.Column(
            "search", sa.Text(), nullable=False, comment="Lowercased ids, pseudonyms, department, platform."
        ),
    )
    op.create_index("ix_catalogue_samples_received", "catalogue_samples", ["received_at", "sample_id"])
    op.create_index(
        "ix_catalogue_samples_region", "catalogue_samples", ["region", "received_at", "sample_id"]
    )
    op.create_index(
        "ix_catalogue_samples_status", "catalogue_samples", ["status", "received_at", "sample_id"]
    )
    op.create_index(
        "ix_catalogue_samples_analysis", "catalogue_samples", ["analysis_type", "received_at", "sample_id"]
    )
    op.create_index(
        "ix_catalogue_samples_stats", "catalogue_samples", ["region", "received_month", "status", "ge_micro"]
    )

    op.create_table(
        "catalogue_files",
        sa.Column(
            "submission_id",
            sa.String(64),
            sa.ForeignKey("catalogue_submissions.submission_id"),
            primary_key=True,
        ),
        sa.Column("role", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("sample_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False, comment="Internal location, without credentials."),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("md5", sa.String(32)),
        sa.Column("tier", sa.String(8), nullable=False, comment="hot, warm or tape; set hot on first sight."),
        sa.Column("accepted", sa.Boolean()),
        sa.Column("conforms", sa.Boolean()),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("provenance", sa.String(255)),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("trace_id", sa.String(32)),
    )
    op.create_index("ix_catalogue_files_sample", "catalogue_files", ["sample_id"])

    if op.get_bind().dialect.name == "postgresql":
        # Substring search (`q`) over 100,000s of rows needs a trigram index on PostgreSQL;
        # pg_trgm is a trusted extension, so the catalogue's owner may create it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_catalogue_samples_search ON catalogue_samples USING gin (search gin_trgm_ops)"
        )


def downgrade() -> None:
    op.drop_table("catalogue_files")
    op.drop_table("catalogue_samples")
    op.drop_table("catalogue_submissions")
    op.drop_table("catalogue_events")
