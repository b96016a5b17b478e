"""Access: each department's Crypt4GH public key, that its working copies are encrypted to.

A key registered again replaces the one before; the ledger keeps every registration.

Revision ID: 0002_department_keys
Revises: 0001_access
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_department_keys"
down_revision = "0001_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_department_keys",
        sa.Column("region", sa.String(16), primary_key=True),
        sa.Column("department", sa.String(128), primary_key=True),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("registered_by", sa.String(16), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("access_department_keys")
