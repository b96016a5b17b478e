"""An accrual is one sample's, and a sample is (region, sample pseudonym): the accruals' key.

Pseudonyms are the regions' own. Keyed by pseudonym alone, a second region's sample of the
same pseudonym took over the first region's accrual (and its refund), and once that month
closed, the first region's later submission of its own sample was frozen and never billed.
Every accrual keeps its data: its region is already stored.

SQLite cannot change a table's primary key in place, so the table is rebuilt (Alembic's
batch copy) with the new key; PostgreSQL alters it in place. Downgrade restores the
pseudonym-only key, and fails (a duplicate primary key) while two regions hold accruals of
one pseudonym: which region's refund to drop is not the migration's to decide.

Revision ID: 0002_billing
Revises: 0001_billing
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_billing"
down_revision = "0001_billing"
branch_labels = None
depends_on = None


def _accruals(key: list[str]) -> sa.Table:
    """``billing_accruals`` with primary key ``key``: the shape SQLite's copy builds."""
    return sa.Table(
        "billing_accruals",
        sa.MetaData(),
        sa.Column("region", sa.String(16), primary_key="region" in key, nullable=False),
        sa.Column("sample_id", sa.String(128), primary_key="sample_id" in key, nullable=False),
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("department", sa.String(128), nullable=False),
        sa.Column("analysis_type", sa.String(32), nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.Column("received_month", sa.String(7), nullable=False),
        sa.Column("billed_month", sa.String(7), nullable=False),
        sa.Column("ge_micro", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Index("ix_billing_accruals_billed_month", "billed_month"),
    )


def _rekey(key: list[str]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("billing_accruals", recreate="always", copy_from=_accruals(key)):
            pass
        return
    op.drop_constraint("billing_accruals_pkey", "billing_accruals", type_="primary")
    op.create_primary_key("billing_accruals_pkey", "billing_accruals", key)


def upgrade() -> None:
    _rekey(["region", "sample_id"])


def downgrade() -> None:
    _rekey(["sample_id"])
