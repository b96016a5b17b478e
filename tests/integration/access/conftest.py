"""Fixtures of the access service's tests: its store on SQLite and on PostgreSQL."""

from __future__ import annotations

from tests.postgres import engine_urls, postgres_server

__all__ = ["postgres_server"]

access_url = engine_urls("access")
"""An empty database: every store test runs on both engines."""
