"""Which state of each recalled file was last announced (``recall-updated``): a round sends
one event per change of state, and none again after a restart.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
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
    with op.batch_alter_table("archive_recall_files") as table:
        table.add_column(sa.Column("announced", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("archive_recall_files") as table:
        table.drop_column("announced")
