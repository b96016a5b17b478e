"""An accrual keeps the trace context of billing's handling of its indexed event.

A month close is a trace of its own, with a span link to each accrual it pays; the links
are made from this column, so Jaeger leads from a refund back to the submissions. It is
nullable: accruals from before it have no trace context, and a close links to the others.

Revision ID: 0003_billing
Revises: 0002_billing
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_billing"
down_revision = "0002_billing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("billing_accruals", sa.Column("trace_parent", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_accruals") as batch:
        batch.drop_column("trace_parent")
