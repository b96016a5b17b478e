"""Alembic environment of the harmoniser: the shared runner, on the job table."""

from services.harmoniser.jobs import metadata
from shared.database import run_migrations

run_migrations(metadata)
