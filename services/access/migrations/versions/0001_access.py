"""Access: catalogue projection (samples, files as DRS objects), requests, decisions, revocations, outbox, audit ledger.

Decisions, revocations and the ledger are append-only: triggers refuse UPDATE and DELETE
(as billing's ledger, on SQLite and PostgreSQL).

Revision ID: 0001_access
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.database import append_only_statements, drop_append_only_statements

revision = "0001_access"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("access_decisions", "access_revocations", "access_ledger")


def upgrade() -> None:
    moment = sa.DateTime(timezone=True)
    op.create_table(
        "access_samples",
        sa.Column("region", sa.String(16), primary_key=True),
        sa.Column("sample_id", sa.String(128), primary_key=True),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("analysis_type", sa.String(32), nullable=False),
        sa.Column("received_at", moment, nullable=False),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_access_samples_patient_id", "access_samples", ["patient_id"])
    op.create_table(
        "access_objects",
        sa.Column("object_id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(16), nullable=False),
        sa.Column("sample_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("deliverable", sa.String(24), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("created_at", moment, nullable=False),
    )
    op.create_table(
        "access_requests",
        sa.Column("request_id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(16), nullable=False),
        sa.Column("requester_region", sa.String(16), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("requested_at", moment, nullable=False),
    )
    op.create_index("ix_access_requests_owner", "access_requests", ["owner"])
    op.create_index("ix_access_requests_requester_region", "access_requests", ["requester_region"])
    op.create_table(
        "access_decisions",
        sa.Column("request_id", sa.String(32), sa.ForeignKey("access_requests.request_id"), primary_key=True),
        sa.Column("granted", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("decided_at", moment, nullable=False),
        sa.Column("valid_until", moment),
    )
    op.create_table(
        "access_revocations",
        sa.Column("request_id", sa.String(32), sa.ForeignKey("access_requests.request_id"), primary_key=True),
        sa.Column("revoked_by", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("revoked_at", moment, nullable=False),
    )
    op.create_table(
        "access_outbox",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("ce_type", sa.String(128), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("queued_at", moment, nullable=False),
        sa.Column("emitted", sa.Boolean, nullable=False),
    )
    op.create_index("ix_access_outbox_emitted", "access_outbox", ["emitted"])
    op.create_table(
        "access_ledger",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(16), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("request_id", sa.String(32)),
        sa.Column("case_reference", sa.String(128), nullable=False),
        sa.Column("concerns", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_sha256", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
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
    for table in ("access_ledger", "access_outbox", "access_revocations", "access_decisions"):
        op.drop_table(table)
    op.drop_table("access_objects")
    op.drop_index("ix_access_requests_requester_region", "access_requests")
    op.drop_index("ix_access_requests_owner", "access_requests")
    op.drop_table("access_requests")
    op.drop_index("ix_access_samples_patient_id", "access_samples")
    op.drop_table("access_samples")
