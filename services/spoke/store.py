"""The spoke's catalogue: the revision it shows, applied whole or not at all.

A revision is written in one transaction with its number, so a spoke killed mid-apply
restarts on the last complete revision; one older than the stored one is refused, so no
restart, replay or rebuilt feed moves the catalogue back. The bodies are kept as the hub
signed them (canonical JSON), with each entry's sequence number and digest, so the state
hash of what is stored can be recomputed and compared with the revision's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter
from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from services.spoke.search import Search, encode_cursor, searched_columns
from services.spoke.tables import spoke_revision, spoke_samples
from services.spoke.verifier import Revision
from shared.database import Store
from shared.envelope import canonical_json
from shared.feed import Listed, SampleRecord, SampleSummary, StateHash

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_KEY = 0x73706B65  # the advisory lock of the spoke's writer on PostgreSQL
EVERY_SAMPLE = Search()
BODY: TypeAdapter[SampleSummary | SampleRecord] = TypeAdapter(Listed)


class OlderRevision(Exception):
    """A revision older than the one stored: the catalogue never goes back."""


@dataclass(frozen=True)
class Shown:
    revision: int
    upto: int
    state_hash: str
    applied_at: datetime


class SpokeStore(Store):
    SERVICE = "spoke"
    MIGRATIONS = MIGRATIONS

    def __init__(self, url: str, feed: str, *, migrate: bool = True) -> None:
        super().__init__(url, migrate=migrate, one_connection=True)
        self.feed = feed

    def shown(self) -> Shown | None:
        with self.reading() as conn:
            return self._shown(conn)

    def _shown(self, conn: Connection) -> Shown | None:
        row = conn.execute(select(spoke_revision).where(spoke_revision.c.feed == self.feed)).first()
        return None if row is None else Shown(row.revision, row.upto, row.state_hash, row.applied_at)

    def apply(self, revision: Revision, *, whole: bool = False) -> None:
        """Show ``revision``: its changes (or, ``whole``, exactly its samples) and its number, at once."""
        now = datetime.now(UTC)
        with self.writing(lock=LOCK_KEY) as conn:
            row = conn.execute(select(spoke_revision).where(spoke_revision.c.feed == self.feed)).first()
            if row is not None and revision.revision < row.revision:
                raise OlderRevision(
                    f"revision {revision.revision} is older than revision {row.revision}, shown"
                )
            keys = set(revision.samples) if whole else set(revision.changed) | set(revision.removed)
            if whole:
                conn.execute(delete(spoke_samples))
            elif keys:
                conn.execute(delete(spoke_samples).where(spoke_samples.c.key.in_(sorted(keys))))
            rows = []
            for key in sorted(keys):
                held = revision.samples.get(key)
                if held is None:
                    continue
                body = held.body.model_dump(mode="json")
                rows.append(
                    {
                        "key": key,
                        "kind": held.body.kind,
                        "seq": held.seq,
                        "digest": held.digest,
                        "body": canonical_json(body).decode(),
                        **searched_columns(body),
                    }
                )
            if rows:
                conn.execute(insert(spoke_samples), rows)
            values = {"revision": revision.revision, "upto": revision.upto, "state_hash": revision.state_hash}
            if row is None:
                conn.execute(insert(spoke_revision).values(feed=self.feed, applied_at=now, **values))
            else:
                conn.execute(
                    update(spoke_revision)
                    .where(spoke_revision.c.feed == self.feed)
                    .values(applied_at=now, **values)
                )

    def listed(
        self, search: Search = EVERY_SAMPLE
    ) -> tuple[Shown | None, list[SampleSummary | SampleRecord], str | None]:
        """The revision shown and the samples ``search`` finds, read together (a revision
        applied meanwhile is in neither or in both), in key order; and the cursor of the next
        page, if more follow this one (``search.limit``)."""
        c = spoke_samples.c
        query = select(c.key, c.body).order_by(c.key)
        if search.kind is not None:
            query = query.where(c.kind == search.kind)
        for column, value in (
            (c.region, search.region),
            (c.analysis_type, search.analysis),
            (c.status, search.status),
        ):
            if value is not None:
                query = query.where(column == value.value)
        since, before = search.received_bounds
        if since is not None:
            query = query.where(
                or_(
                    and_(c.received_at.is_not(None), c.received_at >= since),
                    and_(c.received_at.is_(None), c.received_month >= search.month_from),
                )
            )
        if before is not None:
            query = query.where(
                or_(
                    and_(c.received_at.is_not(None), c.received_at < before),
                    and_(c.received_at.is_(None), c.received_month <= search.month_to),
                )
            )
        if search.q is not None:
            query = query.where(c.search_text.contains(search.q.lower(), autoescape=True))
        if search.after is not None:
            query = query.where(c.key > search.after)
        if search.limit is not None:
            query = query.limit(search.limit + 1)
        with self.reading() as conn:
            shown = self._shown(conn)
            rows = conn.execute(query).all()
        found = rows[: search.limit] if search.limit is not None else rows
        following = encode_cursor(found[-1].key) if len(rows) > len(found) else None
        return shown, [BODY.validate_python(json.loads(row.body)) for row in found], following

    def sample(self, key: str) -> tuple[Shown | None, SampleSummary | SampleRecord | None]:
        """The revision shown and one of its samples, read together."""
        with self.reading() as conn:
            shown = self._shown(conn)
            body = conn.execute(select(spoke_samples.c.body).where(spoke_samples.c.key == key)).scalar()
        return shown, None if body is None else BODY.validate_python(json.loads(body))

    def samples(self) -> dict[str, SampleSummary | SampleRecord]:
        with self.reading() as conn:
            rows = conn.execute(select(spoke_samples.c.key, spoke_samples.c.body)).all()
        return {row.key: BODY.validate_python(json.loads(row.body)) for row in rows}

    def state_hash(self) -> str:
        """The state hash of what is stored, recomputed: what the shown revision's must equal."""
        state = StateHash()
        with self.reading() as conn:
            for key, digest in conn.execute(select(spoke_samples.c.key, spoke_samples.c.digest)):
                state.add(key, digest)
        return state.hexdigest()
