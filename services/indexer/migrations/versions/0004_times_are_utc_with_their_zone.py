"""The catalogue's times are UTC with their zone: ``timestamptz`` on PostgreSQL.

Until now they were naive UTC (``timestamp without time zone``), and the store turned every
time to naive UTC before writing and back to aware after reading. The shared column type
(``shared.database.UtcDateTime``) stores the instant itself, so the store does neither.

PostgreSQL converts each row in place, reading the stored naive value as UTC (``AT TIME ZONE
'UTC'``, whatever the session's zone); the indexes on these columns are rebuilt with them.
SQLite has no zoned type: the rows already hold UTC as SQLAlchemy's fixed-width text, which
is what the shared type reads and writes, so nothing there changes.

Downgrade turns the instants back into naive UTC.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMES = {
    "catalogue_events": ["time"],
    "catalogue_submissions": ["received_at", "first_event_at", "last_event_at"],
    "catalogue_samples": ["received_at", "updated_at"],
}
"""Every time column of the catalogue."""


def _retype(zoned: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    target = "timestamp with time zone" if zoned else "timestamp without time zone"
    for table, columns in TIMES.items():
        changes = ", ".join(
            f'ALTER COLUMN "{column}" TYPE {target} USING "{column}" AT TIME ZONE \'UTC\''
            for column in columns
        )
        op.execute(f'ALTER TABLE "{table}" {changes}')


def upgrade() -> None:
    _retype(zoned=True)


def downgrade() -> None:
    _retype(zoned=False)
