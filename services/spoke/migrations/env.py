"""Alembic environment of the spoke: the shared runner with its tables."""

from services.spoke.tables import metadata
from shared.database import run_migrations

run_migrations(metadata)
