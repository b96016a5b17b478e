"""Fixtures of the indexer's tests: one catalogue per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.indexer.store import Catalogue
from tests.postgres import PostgresServer, postgres_server

__all__ = ["postgres_server"]


@pytest.fixture(params=["sqlite", "postgresql"])
def catalogue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: every catalogue test runs on both engines."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalogue.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database("catalogue")


@pytest.fixture
def catalogue(catalogue_url: str) -> Iterator[Catalogue]:
    store = Catalogue(catalogue_url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()
