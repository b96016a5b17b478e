"""Billing's tables: accruals (mutable while their month is open), and the grant ledger and
statements (append-only: the migration installs triggers that refuse UPDATE and DELETE).

Amounts are BIGINT øre and genome equivalents BIGINT micro-GE: exact on SQLite and
PostgreSQL alike. Timestamps are ISO 8601 UTC text, so they keep their zone on SQLite too.
An accrual is one sample's, and a sample is (region, sample pseudonym): two regions'
samples of one pseudonym are two accruals, each billed to its own region (migration 0002).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UtcTimestamp(TypeDecorator[datetime]):
    """An aware datetime stored as ISO 8601 UTC text."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("billing stores aware timestamps only")
        return value.astimezone(UTC).isoformat()

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else datetime.fromisoformat(str(value))


metadata = MetaData()

accruals = Table(
    "billing_accruals",
    metadata,
    Column("region", String(16), primary_key=True),
    Column("sample_id", String(128), primary_key=True),
    Column("submission_id", String(64), nullable=False),
    Column("department", String(128), nullable=False),
    Column("analysis_type", String(32), nullable=False),
    Column("received_at", UtcTimestamp(), nullable=False),
    Column("received_month", String(7), nullable=False),
    Column("billed_month", String(7), nullable=False, index=True),
    Column("ge_micro", BigInteger, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("trace_parent", String(64)),  # migration 0003: the month close links to it
)

grant_ledger = Table(
    "billing_grant_ledger",
    metadata,
    Column("entry_id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(24), nullable=False),
    Column("amount_ore", BigInteger, nullable=False),
    Column("balance_after_ore", BigInteger, nullable=False),
    Column("month", String(7)),
    Column("statement_id", String(36)),
    Column("recorded_by", String(128), nullable=False),
    Column("recorded_at", UtcTimestamp(), nullable=False),
    Column("note", Text, nullable=False, default=""),
)

statements = Table(
    "billing_statements",
    metadata,
    Column("statement_id", String(36), primary_key=True),
    Column("month", String(7), nullable=False, unique=True),
    Column("event_id", String(36), nullable=False),
    Column("closed_at", UtcTimestamp(), nullable=False),
    Column("closed_by", String(128), nullable=False),
    Column("forced", Boolean, nullable=False),
    Column("rate_dkk", Integer, nullable=False),
    Column("total_ge_micro", BigInteger, nullable=False),
    Column("total_ore", BigInteger, nullable=False),
    Column("balance_before_ore", BigInteger, nullable=False),
    Column("balance_after_ore", BigInteger, nullable=False),
    Column("document", Text, nullable=False),
)

emissions = Table(
    "billing_emissions",
    metadata,
    Column("statement_id", String(36), ForeignKey("billing_statements.statement_id"), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("emitted_at", UtcTimestamp(), nullable=False),
)

APPEND_ONLY = ("billing_grant_ledger", "billing_statements")
