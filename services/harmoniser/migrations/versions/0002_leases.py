"""Leases: the replica that owns a job and the instant its lease ends.

The queue moves into the harmoniser's database, shared by its replicas: a job is held by the
replica that claimed it (``owner``) for as long as its heartbeats push ``lease_expires_at``
on; a job whose lease ended is taken over by another replica. Both are empty on the jobs a
queue already has: a job left running then has no lease, so it is taken over at once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("harmoniser_jobs") as table:
        table.add_column(sa.Column("owner", sa.String(255)))
        table.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True)))
    op.create_index("harmoniser_jobs_by_state", "harmoniser_jobs", ["state", "created_at"])


def downgrade() -> None:
    op.drop_index("harmoniser_jobs_by_state", table_name="harmoniser_jobs")
    with op.batch_alter_table("harmoniser_jobs") as table:
        table.drop_column("lease_expires_at")
        table.drop_column("owner")
