"""Where the archive said each body is, apart from the files: a move or recall told before
the catalogue knows the file (a replay reads the topics in any order) is applied once it does.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalogue_placements",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("sample_id", sa.String(128), primary_key=True),
        sa.Column("path", sa.Text(), primary_key=True, comment="The body's path relative to the archive root."),
        sa.Column("tier", sa.String(8), comment="hot, warm or tape, as the last tier-moved said."),
        sa.Column("recall_id", sa.String(32)),
        sa.Column("recall_state", sa.String(16)),
        sa.Column("recall_expected_at", sa.DateTime(timezone=True)),
        comment="Where the archive said each body is, kept apart from the files so that a move or "
        "recall told before the catalogue knows the file (a replay reads the topics in any order) "
        "is applied once it does.",
    )


def downgrade() -> None:
    op.drop_table("catalogue_placements")
