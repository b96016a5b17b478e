"""The publisher's database: the lease on the spokes' feeds (``tables.leases``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.publisher.tables import leases
from shared.database import NamedLeases, Store

MIGRATIONS = Path(__file__).parent / "migrations"
FEEDS_LEASE = "feeds"
"""The one lease name: whoever holds it writes every spoke's feed."""


class PublisherStore(Store):
    SERVICE = "publisher"
    MIGRATIONS = MIGRATIONS

    def __init__(self, url: str, lease_length: timedelta, *, migrate: bool = True) -> None:
        super().__init__(url, migrate=migrate)
        self.leases = NamedLeases(self, leases, lease_length)
