"""The job table: one row per submission, its state, attempts, outcome and event.

Before migrations the harmoniser created this very table at start (``create_all``); a queue
made that way already has it, column for column, so the revision adopts it as it is, with
its jobs, and only records the version.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
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
    if sa.inspect(op.get_bind()).has_table("harmoniser_jobs"):
        return
    op.create_table(
        "harmoniser_jobs",
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("cause_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("trace_headers", sa.Text(), nullable=False),
        sa.Column("result", sa.Text()),
        sa.Column("emitted", sa.Boolean(), nullable=False),
        sa.Column("log_tail", sa.Text(), nullable=False),
        sa.Column("pgid", sa.Integer()),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("harmoniser_jobs")
