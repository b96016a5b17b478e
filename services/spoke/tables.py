"""The spoke's tables: the samples of the revision it shows, and that revision.

Both change in one transaction, so the catalogue a spoke serves is always one whole,
verified revision: a process killed mid-apply comes back on the previous one.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text

from shared.database import UtcDateTime

metadata = MetaData()

spoke_samples = Table(
    "spoke_samples",
    metadata,
    Column("key", String(160), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("body", Text, nullable=False, doc="The entry's body as the hub signed it (canonical JSON)."),
    # What the catalogue's search filters on, taken from the body as it is stored.
    Column("region", String(32), nullable=False, index=True),
    Column("analysis_type", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("received_month", String(7), nullable=False),
    Column(
        "received_at",
        UtcDateTime(),
        nullable=True,
        doc="A record's moment of receipt; a summary has only its month.",
    ),
    Column(
        "search_text",
        Text,
        nullable=False,
        doc="Lower-cased pseudonym, and a record's submission id, department and platform, a line each.",
    ),
)

spoke_revision = Table(
    "spoke_revision",
    metadata,
    Column("feed", String(96), primary_key=True),
    Column("revision", BigInteger, nullable=False),
    Column("upto", BigInteger, nullable=False),
    Column("state_hash", String(64), nullable=False),
    Column("applied_at", UtcDateTime(), nullable=False),
)
