"""Fixtures of billing's integration tests: its store on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.billing.store import BillingStore
from tests.postgres import engine_urls, postgres_server

__all__ = ["postgres_server"]


billing_url = engine_urls("billing")
"""An empty database: every store test runs on both engines."""


@pytest.fixture
def store(billing_url: str) -> Iterator[BillingStore]:
    s = BillingStore(billing_url)
    try:
        yield s
    finally:
        s.dispose()
