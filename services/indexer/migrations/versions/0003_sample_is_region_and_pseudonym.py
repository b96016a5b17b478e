"""A sample is (region, sample pseudonym): the samples' key, the sample indexes, files' region.

Pseudonyms are the regions' own, so two regions may report the same one for two different
samples. Keyed by pseudonym alone, the second region's report took over the first region's
catalogue row. Every existing row keeps its data: a sample row's region is already stored,
and a file's region is its submission's.

SQLite cannot change a table's primary key in place, so ``catalogue_samples`` is rebuilt
(Alembic's batch copy) with the new key; that renumbers its rowids, so the FTS5 trigram
index of migration 0002, which mirrors the table by rowid, is dropped before and rebuilt
after. PostgreSQL alters the key in place; its pg_trgm index is untouched.

Downgrade restores the pseudonym-only key, and fails (a duplicate primary key) while two
regions hold samples of one pseudonym: which one to drop is not the migration's to decide.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FTS_DROP = [
    "DROP TRIGGER catalogue_samples_fts_insert",
    "DROP TRIGGER catalogue_samples_fts_delete",
    "DROP TRIGGER catalogue_samples_fts_update",
    "DROP TABLE catalogue_samples_fts",
]
FTS_CREATE = [
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

SAMPLE_INDEXES_BEFORE = {
    "ix_catalogue_samples_received": ["received_at", "sample_id"],
    "ix_catalogue_samples_region": ["region", "received_at", "sample_id"],
    "ix_catalogue_samples_status": ["status", "received_at", "sample_id"],
    "ix_catalogue_samples_analysis": ["analysis_type", "received_at", "sample_id"],
    "ix_catalogue_samples_stats": ["region", "received_month", "status", "ge_micro"],
}
SAMPLE_INDEXES_AFTER = {
    "ix_catalogue_samples_received": ["received_at", "region", "sample_id"],
    "ix_catalogue_samples_region": ["region", "received_at", "sample_id"],
    "ix_catalogue_samples_status": ["status", "received_at", "region", "sample_id"],
    "ix_catalogue_samples_analysis": ["analysis_type", "received_at", "region", "sample_id"],
    "ix_catalogue_samples_stats": ["region", "received_month", "status", "ge_micro"],
}
CHANGED = [name for name in SAMPLE_INDEXES_AFTER if SAMPLE_INDEXES_AFTER[name] != SAMPLE_INDEXES_BEFORE[name]]


def _samples(key: list[str], indexes: dict[str, list[str]]) -> sa.Table:
    """``catalogue_samples`` as it is with primary key ``key``: the shape SQLite's copy builds."""
    return sa.Table(
        "catalogue_samples",
        sa.MetaData(),
        sa.Column("region", sa.String(32), primary_key="region" in key, nullable=False),
        sa.Column("sample_id", sa.String(128), primary_key="sample_id" in key, nullable=False),
        sa.Column(
            "submission_id",
            sa.String(64),
            sa.ForeignKey("catalogue_submissions.submission_id"),
            nullable=False,
        ),
        sa.Column("department", sa.String(128), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("analysis_type", sa.String(32), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("received_month", sa.String(7), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("ge_micro", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("submissions", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("search", sa.Text(), nullable=False),
        *(sa.Index(name, *columns) for name, columns in indexes.items()),
    )


def _rekey_samples(key: list[str], indexes: dict[str, list[str]]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in FTS_DROP:
            op.execute(statement)
        with op.batch_alter_table("catalogue_samples", recreate="always", copy_from=_samples(key, indexes)):
            pass
        for statement in FTS_CREATE:
            op.execute(statement)
        return
    op.drop_constraint("catalogue_samples_pkey", "catalogue_samples", type_="primary")
    op.create_primary_key("catalogue_samples_pkey", "catalogue_samples", key)
    for name in CHANGED:
        op.drop_index(name, "catalogue_samples")
        op.create_index(name, "catalogue_samples", indexes[name])


def upgrade() -> None:
    _rekey_samples(["region", "sample_id"], SAMPLE_INDEXES_AFTER)

    op.drop_index("ix_catalogue_submissions_sample", "catalogue_submissions")
    op.create_index("ix_catalogue_submissions_sample", "catalogue_submissions", ["region", "sample_id"])

    op.add_column("catalogue_files", sa.Column("region", sa.String(32), nullable=True))
    op.execute(
        "UPDATE catalogue_files SET region = (SELECT s.region FROM catalogue_submissions s "
        "WHERE s.submission_id = catalogue_files.submission_id)"
    )
    with op.batch_alter_table("catalogue_files") as files:
        files.alter_column("region", existing_type=sa.String(32), nullable=False)
        files.drop_index("ix_catalogue_files_sample")
        files.create_index("ix_catalogue_files_sample", ["region", "sample_id"])


def downgrade() -> None:
    with op.batch_alter_table("catalogue_files") as files:
        files.drop_index("ix_catalogue_files_sample")
        files.create_index("ix_catalogue_files_sample", ["sample_id"])
        files.drop_column("region")

    op.drop_index("ix_catalogue_submissions_sample", "catalogue_submissions")
    op.create_index("ix_catalogue_submissions_sample", "catalogue_submissions", ["sample_id"])

    _rekey_samples(["sample_id"], SAMPLE_INDEXES_BEFORE)
