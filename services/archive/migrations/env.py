"""Alembic environment of the archive service: the shared runner, on its placement tables."""

from services.archive.placement import metadata
from shared.database import run_migrations

run_migrations(metadata)
