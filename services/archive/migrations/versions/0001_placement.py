"""Where each body is (``archive_files``), the moves between tiers (``archive_moves``) and the
recalls from tape (``archive_recall_requests``, ``archive_recall_files``).

Revision ID: 0001
Revises:
Create Date: 2026-12-02
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
        "archive_files",
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("sample", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("tier", sa.String(8), nullable=False),
        sa.Column("last_access", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "archive_moves",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("target", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("emitted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_archive_moves_path", "archive_moves", ["path"])
    op.create_table(
        "archive_recall_requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("requester", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "archive_recall_files",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("pinned_until", sa.DateTime(timezone=True)),
        sa.Column("emitted", sa.Boolean(), nullable=False),
    )

    op.create_table(
        "archive_leases",
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("holder", sa.String(160), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("archive_leases")
    op.drop_table("archive_recall_files")
    op.drop_table("archive_recall_requests")
    op.drop_index("ix_archive_moves_path", "archive_moves")
    op.drop_table("archive_moves")
    op.drop_table("archive_files")
