"""S3 uploads in transit: each file's multipart upload and the parts S3 acknowledged.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "receiver_uploads",
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("upload_id", sa.String(1024), nullable=False, unique=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id", "name"],
            ["receiver_files.submission_id", "receiver_files.name"],
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "receiver_upload_parts",
        sa.Column(
            "upload_id",
            sa.String(1024),
            sa.ForeignKey("receiver_uploads.upload_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("part_number", sa.Integer(), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("receiver_upload_parts")
    op.drop_table("receiver_uploads")
