"""Publisher: the lease on the spokes' feeds.

Revision ID: 0001_publisher
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_publisher"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publisher_leases",
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("holder", sa.String(160), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("publisher_leases")
