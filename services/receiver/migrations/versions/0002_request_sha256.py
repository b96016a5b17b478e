"""The hash of the metadata an idempotency key opened a submission with.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
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
    with op.batch_alter_table("receiver_submissions") as batch:
        batch.add_column(sa.Column("request_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("receiver_submissions") as batch:
        batch.drop_column("request_sha256")
