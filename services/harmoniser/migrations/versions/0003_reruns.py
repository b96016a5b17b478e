"""Reruns: a submission may have more than one job, one per reanalysis campaign's release.

The key was the submission id; it becomes the job key (:func:`services.harmoniser.jobs.job_key`),
which for every job a queue already has (all of them harmonisations at intake) is that very
submission id, so a replayed validated event still finds its job. The submission id is kept
beside it, and a campaign's run names its campaign and Sarek release.

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
    with op.batch_alter_table("harmoniser_jobs") as table:
        table.alter_column(
            "submission_id", new_column_name="job_key", type_=sa.String(128), existing_type=sa.String(64)
        )
    with op.batch_alter_table("harmoniser_jobs") as table:
        table.add_column(sa.Column("submission_id", sa.String(64)))
        table.add_column(
            sa.Column(
                "sarek_version",
                sa.String(32),
                comment="A campaign's release; none: the service's own, at intake.",
            )
        )
        table.add_column(
            sa.Column("campaign_id", sa.String(32), comment="The reanalysis campaign that asked for this run.")
        )
    op.execute("UPDATE harmoniser_jobs SET submission_id = job_key")
    with op.batch_alter_table("harmoniser_jobs") as table:
        table.alter_column("submission_id", existing_type=sa.String(64), nullable=False)


def downgrade() -> None:
    op.execute("DELETE FROM harmoniser_jobs WHERE campaign_id IS NOT NULL")
    with op.batch_alter_table("harmoniser_jobs") as table:
        table.drop_column("campaign_id")
        table.drop_column("sarek_version")
        table.drop_column("submission_id")
    with op.batch_alter_table("harmoniser_jobs") as table:
        table.alter_column(
            "job_key", new_column_name="submission_id", type_=sa.String(64), existing_type=sa.String(128)
        )
