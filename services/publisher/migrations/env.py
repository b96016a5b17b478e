"""Alembic environment of the publisher: the shared runner with its tables."""

from services.publisher.tables import metadata
from shared.database import run_migrations

run_migrations(metadata)
