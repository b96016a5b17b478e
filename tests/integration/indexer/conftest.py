"""Fixtures of the indexer's tests: one catalogue per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.indexer.store import Catalogue
from tests.postgres import engine_urls, postgres_server

__all__ = ["postgres_server"]


catalogue_url = engine_urls("catalogue")
"""An empty database: every store test runs on both engines."""


@pytest.fixture
def catalogue(catalogue_url: str) -> Iterator[Catalogue]:
    store = Catalogue(catalogue_url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()
