"""SQLite: a trigram full-text index for the catalogue's substring search (`q`).

A `LIKE '%...%'` over 100,000 samples is a full scan when the term is rare (a pseudonym):
hundreds of milliseconds on SQLite. FTS5's trigram tokenizer answers such LIKE patterns
from an index, as pg_trgm does on PostgreSQL (migration 0001). The FTS table mirrors
``catalogue_samples.search`` by rowid (external content), kept current by triggers.
A VACUUM may renumber the rowids of a table without an integer key, so after a VACUUM the
index must be rebuilt: ``INSERT INTO catalogue_samples_fts(catalogue_samples_fts) VALUES('rebuild')``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = [
    "CREATE VIRTUAL TABLE catalogue_samples_fts USING fts5("
    "search, content='catalogue_samples', content_rowid='rowid', tokenize='trigram')",
    "CREATE TRIGGER catalogue_samples_fts_insert AFTER INSERT ON catalogue_samples BEGIN "
    "INSERT INTO catalogue_samples_fts(rowid, search) VALUES (new.rowid, new.search); END",
    "CREATE TRIGGER catalogue_samples_fts_delete AFTER DELETE ON catalogue_samples BEGIN "
    "INSERT INTO catalogue_samples_fts(catalogue_samples_fts, rowid, search) "
    "VALUES ('delete', old.rowid, old.search); END",
    "CREATE TRIGGER catalogue_samples_fts_update AFTER UPDATE OF search ON catalogue_samples BEGIN "
    "INSERT INTO catalogue_samples_fts(catalogue_samples_fts, rowid, search) "
    "VALUES ('delete', old.rowid, old.search); "
    "INSERT INTO catalogue_samples_fts(rowid, search) VALUES (new.rowid, new.search); END",
    "INSERT INTO catalogue_samples_fts(catalogue_samples_fts) VALUES ('rebuild')",
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER catalogue_samples_fts_{name}")
    op.execute("DROP TABLE catalogue_samples_fts")
