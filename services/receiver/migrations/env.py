"""Alembic environment of the receiver: the shared runner, on the receiver's tables."""

from services.receiver.state import metadata
from shared.database import run_migrations

run_migrations(metadata)
