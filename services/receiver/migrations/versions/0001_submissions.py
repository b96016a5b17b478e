"""Submissions and their declared files.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "receiver_submissions",
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("department", sa.String(128), nullable=False),
        sa.Column("sample_id", sa.String(128), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("analysis_type", sa.String(32), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("traceparent", sa.String(128), nullable=True),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("emitted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_receiver_submissions_key", "receiver_submissions", ["created_by", "idempotency_key"], unique=True
    )
    op.create_index("ix_receiver_submissions_sample", "receiver_submissions", ["region", "sample_id"])
    op.create_table(
        "receiver_files",
        sa.Column(
            "submission_id",
            sa.String(64),
            sa.ForeignKey("receiver_submissions.submission_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("declared_sha256", sa.String(64), nullable=True),
        sa.Column("url", sa.String(2048), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("md5", sa.String(32), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_receiver_files_sha256", "receiver_files", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_receiver_files_sha256", "receiver_files")
    op.drop_table("receiver_files")
    op.drop_index("ix_receiver_submissions_sample", "receiver_submissions")
    op.drop_index("ix_receiver_submissions_key", "receiver_submissions")
    op.drop_table("receiver_submissions")
