"""Billing's tables: accruals (mutable while their month is open), and the grant ledger and
statements (append-only: the migration installs triggers that refuse UPDATE and DELETE).

Amounts are BIGINT øre and genome equivalents BIGINT micro-GE: exact on SQLite and
PostgreSQL alike. Times are instants of the shared column type (migration 0004), which keeps
them in UTC on SQLite too and refuses a time without its zone.
An accrual is one sample's, and a sample is (region, sample pseudonym): two regions'
samples of one pseudonym are two accruals, each billed to its own region (migration 0002).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from shared.database import UtcDateTime

metadata = MetaData()

accruals = Table(
    "billing_accruals",
    metadata,
    Column("region", String(16), primary_key=True),
    Column("sample_id", String(128), primary_key=True),
    Column("submission_id", String(64), nullable=False),
    Column("department", String(128), nullable=False),
    Column("analysis_type", String(32), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
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
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("note", Text, nullable=False, default=""),
)

statements = Table(
    "billing_statements",
    metadata,
    Column("statement_id", String(36), primary_key=True),
    Column("month", String(7), nullable=False, unique=True),
    Column("event_id", String(36), nullable=False),
    Column("closed_at", UtcDateTime(), nullable=False),
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
    Column("emitted_at", UtcDateTime(), nullable=False),
)

APPEND_ONLY = ("billing_grant_ledger", "billing_statements")
