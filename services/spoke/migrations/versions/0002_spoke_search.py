"""Spoke: the columns the catalogue's search filters on, taken from each stored body.

Revision ID: 0002_spoke_search
Revises: 0001_spoke
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from services.spoke.search import searched_columns
from shared.database import UtcDateTime

revision = "0002_spoke_search"
down_revision = "0001_spoke"
branch_labels = None
depends_on = None

COLUMNS = ("region", "analysis_type", "status", "received_month", "received_at", "search_text")


def upgrade() -> None:
    with op.batch_alter_table("spoke_samples") as batch:
        for name in ("region", "analysis_type", "status", "search_text"):
            batch.add_column(sa.Column(name, sa.Text, nullable=True))
        batch.add_column(sa.Column("received_month", sa.String(7), nullable=True))
        batch.add_column(sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))
    samples = sa.table(
        "spoke_samples",
        sa.column("key", sa.String),
        sa.column("body", sa.Text),
        *(sa.column(name, sa.Text) for name in COLUMNS if name != "received_at"),
        sa.column("received_at", UtcDateTime()),
    )
    connection = op.get_bind()
    for key, body in connection.execute(sa.select(samples.c.key, samples.c.body)).all():
        connection.execute(
            sa.update(samples).where(samples.c.key == key).values(**searched_columns(json.loads(body)))
        )
    with op.batch_alter_table("spoke_samples") as batch:
        batch.alter_column("region", type_=sa.String(32), nullable=False)
        batch.alter_column("analysis_type", type_=sa.String(32), nullable=False)
        batch.alter_column("status", type_=sa.String(32), nullable=False)
        batch.alter_column("received_month", nullable=False)
        batch.alter_column("search_text", nullable=False)
        batch.create_index("ix_spoke_samples_region", ["region"])


def downgrade() -> None:
    with op.batch_alter_table("spoke_samples") as batch:
        batch.drop_index("ix_spoke_samples_region")
        for name in COLUMNS:
            batch.drop_column(name)
