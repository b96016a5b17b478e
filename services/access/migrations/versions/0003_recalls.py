"""Access: the recall from tape each archived file last had, as the archive told it
(recall-updated, file-staged) or as a working copy asked for it (recall-requested), so a
DRS request for a cold file joins the recall under way and says when to come back.

Revision ID: 0003_recalls
Revises: 0002_department_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_recalls"
down_revision = "0002_department_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_recalls",
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("recall_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expected_at", sa.DateTime(timezone=True)),
        sa.Column("pinned_until", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("access_recalls")
