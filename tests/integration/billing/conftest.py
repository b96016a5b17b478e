"""Fixtures of billing's integration tests: its store on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.billing.store import BillingStore
from tests.postgres import PostgresServer, postgres_server

__all__ = ["postgres_server"]


@pytest.fixture(params=["sqlite", "postgresql"])
def billing_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: every store test runs on both engines."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'billing.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database("billing")


@pytest.fixture
def store(billing_url: str) -> Iterator[BillingStore]:
    s = BillingStore(billing_url)
    try:
        yield s
    finally:
        s.dispose()
