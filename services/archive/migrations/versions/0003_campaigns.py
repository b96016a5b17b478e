"""Reanalysis campaigns: the submission of each body, and the campaigns with their runs.

A campaign reruns every harmonised submission with a new Sarek release, so the archive must
know which submission each body belongs to (bodies learnt before have none, and no campaign
takes them), and keeps each campaign and each submission's run of it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("archive_files") as table:
        table.add_column(
            sa.Column(
                "submission_id",
                sa.String(64),
                comment="The submission that reported the body or whose run made it.",
            )
        )
    op.create_table(
        "archive_campaigns",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("sarek_version", sa.String(32), nullable=False),
        sa.Column("budget", sa.BigInteger(), nullable=False, comment="Bytes of raw reads recalled at once."),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "archive_campaign_runs",
        sa.Column("campaign_id", sa.String(32), primary_key=True),
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("sample", sa.String(255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, comment="Its place in the campaign's tape order."),
        sa.Column("tape", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("paths", sa.Text(), nullable=False, comment="Its raw bodies, one path a line."),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "archive_campaign_runs_by_state", "archive_campaign_runs", ["campaign_id", "state", "position"]
    )


def downgrade() -> None:
    op.drop_index("archive_campaign_runs_by_state", table_name="archive_campaign_runs")
    op.drop_table("archive_campaign_runs")
    op.drop_table("archive_campaigns")
    with op.batch_alter_table("archive_files") as table:
        table.drop_column("submission_id")
