"""Alembic environment of the catalogue: the shared runner, with the indexer's tables."""

from services.indexer.tables import metadata
from shared.database import run_migrations

run_migrations(metadata)
