"""The access service's tables: its projection of the catalogue, the departments' public
keys, requests, decisions, revocations, an outbox of events to emit, the audit ledger, and
the recall from tape each archived file last had (what a working copy of a cold file waits for).

Decisions, revocations and the ledger are append-only (the migration's triggers refuse
UPDATE and DELETE): a decision is final, a revocation is forever, and history is not
rewritten. The ledger's times are ISO 8601 text, exactly the text its hashes cover.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, MetaData, String, Table, Text

from shared.database import UtcDateTime

metadata = MetaData()

samples = Table(
    "access_samples",
    metadata,
    Column("region", String(16), primary_key=True),
    Column("sample_id", String(128), primary_key=True),
    Column("patient_id", String(128), nullable=False, index=True),
    Column("analysis_type", String(32), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("accepted", Boolean, nullable=False),
    Column("event_id", String(64), nullable=False),
)

objects = Table(
    "access_objects",
    metadata,
    Column("object_id", String(32), primary_key=True),
    Column("region", String(16), nullable=False),
    Column("sample_id", String(128), nullable=False),
    Column("name", String(1024), nullable=False),
    Column("deliverable", String(24), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

department_keys = Table(
    "access_department_keys",
    metadata,
    Column("region", String(16), primary_key=True),
    Column("department", String(128), primary_key=True),
    Column("public_key", String(64), nullable=False),  # X25519, hex
    Column("registered_by", String(16), nullable=False),
    Column("registered_at", UtcDateTime(), nullable=False),
)

requests = Table(
    "access_requests",
    metadata,
    Column("request_id", String(32), primary_key=True),
    Column("owner", String(16), nullable=False, index=True),
    Column("requester_region", String(16), nullable=False, index=True),
    Column("document", Text, nullable=False),  # the access-requested event's data
    Column("requested_at", UtcDateTime(), nullable=False),
)

decisions = Table(
    "access_decisions",
    metadata,
    Column("request_id", String(32), ForeignKey("access_requests.request_id"), primary_key=True),
    Column("granted", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_at", UtcDateTime(), nullable=False),
    Column("valid_until", UtcDateTime()),
)

revocations = Table(
    "access_revocations",
    metadata,
    Column("request_id", String(32), ForeignKey("access_requests.request_id"), primary_key=True),
    Column("revoked_by", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=False),
)

outbox = Table(
    "access_outbox",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("ce_type", String(128), nullable=False),
    Column("data", Text, nullable=False),
    Column("queued_at", UtcDateTime(), nullable=False),
    Column("emitted", Boolean, nullable=False, default=False, index=True),
)

ledger = Table(
    "access_ledger",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("actor", String(16), nullable=False),
    Column("action", String(24), nullable=False),
    Column("request_id", String(32)),
    Column("case_reference", String(128), nullable=False),
    Column("concerns", String(128), nullable=False),  # " hovedstaden syddanmark ": padded for LIKE
    Column("detail", Text, nullable=False),
    Column("prev_sha256", String(64), nullable=False),
    Column("sha256", String(64), nullable=False, unique=True),
)

APPEND_ONLY = ("access_decisions", "access_revocations", "access_ledger")

recalls = Table(
    "access_recalls",
    metadata,
    Column("path", String(1024), primary_key=True, comment="The body's path relative to the archive root."),
    Column("recall_id", String(32), nullable=False),
    Column(
        "state", String(16), nullable=False, comment="SUBMITTED, STARTED, COMPLETED, FAILED or CANCELLED."
    ),
    Column(
        "expected_at", UtcDateTime(), comment="The archive's estimate of when it is staged, while under way."
    ),
    Column("pinned_until", UtcDateTime(), comment="Once staged: readable until then."),
    Column("updated_at", UtcDateTime(), nullable=False),
)
