"""Each catalogue file's recall from tape, if one is under way or was the last: its id, its
WLCG state and the archive's estimate of when it is staged (the tier column had the tier).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("catalogue_files") as table:
        table.add_column(sa.Column("recall_id", sa.String(32), comment="The last recall from tape, if any."))
        table.add_column(
            sa.Column(
                "recall_state", sa.String(16), comment="SUBMITTED, STARTED, COMPLETED, FAILED, CANCELLED."
            )
        )
        table.add_column(
            sa.Column(
                "recall_expected_at",
                sa.DateTime(timezone=True),
                comment="While a recall is under way: the archive's estimate of when it is staged.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("catalogue_files") as table:
        table.drop_column("recall_expected_at")
        table.drop_column("recall_state")
        table.drop_column("recall_id")
