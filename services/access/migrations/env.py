"""Alembic environment of the access service: the shared runner with its tables."""

from services.access.tables import metadata
from shared.database import run_migrations

run_migrations(metadata)
