"""Billing's times are instants of the shared column type, ``timestamptz`` on PostgreSQL.

Until now billing kept its own column type, ISO 8601 UTC text (``2026-01-15T12:00:00+00:00``),
the one store that did; ``shared.database.UtcDateTime`` is every other service's. PostgreSQL
converts each row in place (``x::timestamptz``: the text carries its offset, so the
session's zone does not matter). SQLite has no zoned type: the shared type keeps
SQLAlchemy's fixed-width UTC text (``2026-01-15 12:00:00.000000``), so each stored value is
rewritten to it, keeping its microseconds, and the tables are copied by Alembic's batch
copy with their time columns retyped.

The grant ledger and the statements are append-only: SQLite triggers refuse UPDATE and
DELETE. The rewrite is an UPDATE, and the batch copy drops the old table with its triggers,
so on SQLite they are dropped first and created again at the end, the same triggers as
0001's, inside the migration's one transaction: no commit ever sees the tables unguarded.
PostgreSQL's ``ALTER COLUMN ... TYPE`` rewrites rows without firing row triggers, and keeps
the tables' triggers, so there they stay in place throughout.

Downgrade turns the instants back into ISO 8601 UTC text that the old type reads.

Revision ID: 0004_billing
Revises: 0003_billing
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_billing"
down_revision = "0003_billing"
branch_labels = None
depends_on = None

TIMES = {
    "billing_accruals": "received_at",
    "billing_grant_ledger": "recorded_at",
    "billing_statements": "closed_at",
    "billing_emissions": "emitted_at",
}
"""Every time column of billing: one a table."""

APPEND_ONLY = ("billing_grant_ledger", "billing_statements")
"""The tables whose 0001 triggers refuse UPDATE and DELETE."""

SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"
"""SQLAlchemy's storage format of a SQLite DateTime, which the shared type writes in UTC."""


def _instant_text(iso: str) -> str:
    """ISO 8601 text of the old type as the shared type stores it on SQLite."""
    instant = datetime.fromisoformat(iso)
    if instant.tzinfo is None:
        raise ValueError(f"billing stored aware times only, but found {iso!r}, which has no zone")
    return instant.astimezone(UTC).strftime(SQLITE_DATETIME)


def _iso_text(stored: str) -> str:
    """The shared type's SQLite text as the old type stored it."""
    return datetime.strptime(stored, SQLITE_DATETIME).replace(tzinfo=UTC).isoformat()


def _drop_append_only_triggers() -> None:
    for table in APPEND_ONLY:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")


def _create_append_only_triggers() -> None:
    """0001's SQLite triggers, word for word."""
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def _rewrite_sqlite(convert: Callable[[str], str], column_type: sa.types.TypeEngine[Any]) -> None:
    """Every stored time rewritten by ``convert`` (row by rowid: no time column is indexed),
    each table copied with its time column retyped, the triggers lifted around it all."""
    conn = op.get_bind()
    # SQLite's driver would begin the transaction only at the first UPDATE, leaving the
    # triggers' drop committed on its own; begun here, the drop, the rewrite, the copies and
    # the triggers' re-creation commit together or not at all.
    if not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    _drop_append_only_triggers()
    # The copy of billing_statements drops the old table, which the emissions refer to (a
    # foreign key violation, even deferred: the copy's rename does not repair it), so the
    # emissions are lifted out first and put back, rewritten, into their own copy.
    emissions = conn.exec_driver_sql("SELECT statement_id, event_id, emitted_at FROM billing_emissions").all()
    conn.exec_driver_sql("DELETE FROM billing_emissions")
    for table, column in TIMES.items():
        rows = conn.exec_driver_sql(f"SELECT rowid, {column} FROM {table}").all()
        if rows:
            conn.exec_driver_sql(
                f"UPDATE {table} SET {column} = ? WHERE rowid = ?",
                [(convert(str(value)), rowid) for rowid, value in rows],
            )
        # The copy names the new type by reflection, not by alter_column, which would CAST
        # the text to DATETIME's numeric affinity (the year, 2026, and nothing else).
        retyped = sa.Column(column, column_type, nullable=False)
        with op.batch_alter_table(table, recreate="always", reflect_args=(retyped,)):
            pass
    if emissions:
        conn.exec_driver_sql(
            "INSERT INTO billing_emissions (statement_id, event_id, emitted_at) VALUES (?, ?, ?)",
            [(statement_id, event_id, convert(str(at))) for statement_id, event_id, at in emissions],
        )
    _create_append_only_triggers()


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rewrite_sqlite(_instant_text, sa.DateTime(timezone=True))
        return
    for table, column in TIMES.items():
        op.execute(
            f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE timestamp with time zone '
            f'USING "{column}"::timestamptz'
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rewrite_sqlite(_iso_text, sa.String(40))
        return
    for table, column in TIMES.items():
        op.execute(
            f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE varchar(40) '
            f'USING to_char("{column}" AT TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\')'
        )
