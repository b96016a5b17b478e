"""Billing: accruals, grant ledger, statements, emissions; ledger and statements append-only.

Revision ID: 0001_billing
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.database import append_only_statements, drop_append_only_statements

revision = "0001_billing"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("billing_grant_ledger", "billing_statements")


def upgrade() -> None:
    op.create_table(
        "billing_accruals",
        sa.Column("sample_id", sa.String(128), primary_key=True),
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("region", sa.String(16), nullable=False),
        sa.Column("department", sa.String(128), nullable=False),
        sa.Column("analysis_type", sa.String(32), nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.Column("received_month", sa.String(7), nullable=False),
        sa.Column("billed_month", sa.String(7), nullable=False),
        sa.Column("ge_micro", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_billing_accruals_billed_month", "billing_accruals", ["billed_month"])
    op.create_table(
        "billing_grant_ledger",
        sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("amount_ore", sa.BigInteger, nullable=False),
        sa.Column("balance_after_ore", sa.BigInteger, nullable=False),
        sa.Column("month", sa.String(7)),
        sa.Column("statement_id", sa.String(36)),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.Column("recorded_at", sa.String(40), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_table(
        "billing_statements",
        sa.Column("statement_id", sa.String(36), primary_key=True),
        sa.Column("month", sa.String(7), nullable=False, unique=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("closed_at", sa.String(40), nullable=False),
        sa.Column("closed_by", sa.String(128), nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("rate_dkk", sa.Integer, nullable=False),
        sa.Column("total_ge_micro", sa.BigInteger, nullable=False),
        sa.Column("total_ore", sa.BigInteger, nullable=False),
        sa.Column("balance_before_ore", sa.BigInteger, nullable=False),
        sa.Column("balance_after_ore", sa.BigInteger, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
    )
    op.create_table(
        "billing_emissions",
        sa.Column(
            "statement_id",
            sa.String(36),
            sa.ForeignKey("billing_statements.statement_id"),
            primary_key=True,
        ),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("emitted_at", sa.String(40), nullable=False),
    )
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        for statement in append_only_statements(table, dialect):
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        for statement in drop_append_only_statements(table, dialect):
            op.execute(statement)
    op.drop_table("billing_emissions")
    op.drop_table("billing_statements")
    op.drop_table("billing_grant_ledger")
    op.drop_index("ix_billing_accruals_billed_month", "billing_accruals")
    op.drop_table("billing_accruals")
