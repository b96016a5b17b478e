"""Alembic environment of billing: the shared runner with billing's tables."""

from services.billing.tables import metadata
from shared.database import run_migrations

run_migrations(metadata)
