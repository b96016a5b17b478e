"""The catalogue database: the indexer's one writer path and the read queries.

Writing an event is one transaction: keep the event (keyed by its id, so a duplicate is a
no-op), fold the submission's events into its record (:mod:`services.indexer.catalogue`),
upsert the submission and its files, and recompute the sample row. A sample is (region,
sample pseudonym) throughout: two regions' samples of one pseudonym are two rows, each in
its own region's view. The transaction is the store base's serialised one
(:class:`shared.database.Store`), locked on the sample: two writers of one sample (indexer
replicas, or the two consumers of one process) cannot each fold without the other's event,
while writers of other samples go on in parallel on PostgreSQL.

Everything here is synchronous SQLAlchemy Core; the service calls it off the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    column,
    delete,
    func,
    insert,
    literal_column,
    select,
    table,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from services.indexer import tables as t
from services.indexer.catalogue import (
    CATALOGUE_TIERS,
    INITIAL_TIER,
    CatalogueData,
    CatalogueEvent,
    SubmissionOutcome,
    SubmissionRecord,
    current_submission,
    fold,
)
from services.indexer.filters import Cursor, SampleFilters
from services.indexer.views import (
    CatalogueFile,
    FileRecall,
    SampleDetail,
    SamplePage,
    SampleSummary,
    Stats,
    StatsRow,
    SubmissionDetail,
    SubmissionRef,
    TimelineEntry,
)
from shared.database import Store
from shared.events import Harmonised, Region, Validated, ge_to_micro, micro_to_ge, sample_key

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = "indexer"
SAMPLES_FTS = table("catalogue_samples_fts", column("rowid"), column("search"))
"""SQLite only (migration 0002): the trigram index of ``catalogue_samples.search``."""
RARE_TERM = 1000
"""Below this many matches a text search is answered from the trigram index (SQLite)."""
_SUBMISSIONS_PER_READ = 500
"""Submissions whose kept events one query of a batch reads (a bound parameter each)."""
_MODELS: dict[str, type[CatalogueData]] = {m.event_name: m for m in (Validated, Harmonised)}


def _insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which has ON CONFLICT (both dialects spell it alike)."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _upsert(dialect: str, table: Table, keep: Sequence[str] = ()) -> Any:
    """INSERT of a row, or overwrite every column of the existing row but the key and ``keep``.

    Built once per table and executed with parameters (one row, or many as executemany), so
    SQLAlchemy compiles it once: a statement with the values inlined compiles on every call.
    """
    stmt: Any = _insert(dialect, table)
    key = [c.name for c in table.primary_key.columns]
    changed = {
        c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key and c.name not in keep
    }
    return stmt.on_conflict_do_update(index_elements=key, set_=changed)


@dataclass(frozen=True)
class _Statements:
    """The writer's statements for one dialect."""

    keep_event: Any
    submission: Any
    files: Any
    sample: Any

    @classmethod
    def of(cls, dialect: str) -> _Statements:
        return cls(
            keep_event=_insert(dialect, t.events)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(t.events.c.event_id),
            submission=_upsert(dialect, t.submissions),
            # The tier is the storage's business once the file is known: a re-index keeps it.
            files=_upsert(dialect, t.files, keep=("tier", "recall_id", "recall_state", "recall_expected_at")),
            sample=_upsert(dialect, t.samples),
        )


def event_row(event: CatalogueEvent) -> dict[str, Any]:
    """The timeline row of a consumed event, with its data as consumed."""
    s = event.submission
    return {
        "event_id": event.id,
        "submission_id": s.submission_id,
        "sample_id": s.sample_id,
        "region": s.region.value,
        "type": event.type,
        "time": event.time,
        "source": event.source,
        "trace_id": event.trace_id,
        "summary": event.summary,
        "data": event.data.model_dump_json(),
    }


def submission_row(record: SubmissionRecord) -> dict[str, Any]:
    s = record.submission
    return {
        "submission_id": s.submission_id,
        "sample_id": s.sample_id,
        "region": s.region.value,
        "department": s.department,
        "patient_id": s.patient_id,
        "analysis_type": s.analysis_type.value,
        "platform": s.platform,
        "received_at": s.received_at,
        "received_month": record.received_month,
        "verdict": record.verdict.value if record.verdict else None,
        "status": record.status.value if record.status else None,
        "accepted": record.accepted,
        "ge_micro": ge_to_micro(record.genome_equivalents) if record.genome_equivalents is not None else None,
        "raw_bases": record.raw_bases,
        "raw_reads": record.raw_reads,
        "reference_profile": record.reference_profile,
        "policy": record.policy,
        "pipeline": record.pipeline,
        "pipeline_version": record.pipeline_version,
        "reference": record.reference,
        "attempts": record.attempts,
        "trace_id": record.trace_id,
        "first_event_at": record.first_event_at,
        "last_event_at": record.last_event_at,
    }


def file_rows(record: SubmissionRecord) -> list[dict[str, Any]]:
    s = record.submission
    return [
        {
            "submission_id": s.submission_id,
            "role": f.role,
            "name": f.name,
            "region": s.region.value,
            "sample_id": s.sample_id,
            "kind": f.kind,
            "url": f.url,
            "size": f.size,
            "sha256": f.sha256,
            "md5": f.md5,
            "tier": INITIAL_TIER,
            "accepted": f.accepted,
            "conforms": f.conforms,
            "metrics": f.metrics,
            "problems": f.problems,
            "provenance": f.provenance,
            "event_id": f.event_id,
            "trace_id": f.trace_id,
        }
        for f in sorted(record.files.values(), key=lambda f: f.key)
    ]


def sample_row(submission: Mapping[Any, Any], files: int, submissions: int) -> dict[str, Any]:
    """The sample's row from the submission it shows (a ``submission_row`` or a database row)."""
    search = (
        submission["sample_id"],
        submission["patient_id"],
        submission["submission_id"],
        submission["department"],
        submission["platform"],
    )
    return {
        "region": submission["region"],
        "sample_id": submission["sample_id"],
        "submission_id": submission["submission_id"],
        "department": submission["department"],
        "patient_id": submission["patient_id"],
        "analysis_type": submission["analysis_type"],
        "platform": submission["platform"],
        "received_at": submission["received_at"],
        "received_month": submission["received_month"],
        "status": submission["status"],
        "accepted": bool(submission["accepted"]),
        "ge_micro": submission["ge_micro"] or 0,
        "files": files,
        "submissions": submissions,
        "trace_id": submission["trace_id"],
        "updated_at": submission["last_event_at"],
        "search": " ".join(search).lower(),
    }


@dataclass(frozen=True)
class Applied:
    """The effect of one event: the submission's record after it, and whether it was new."""

    record: SubmissionRecord
    new: bool


class Catalogue(Store):
    """The catalogue at ``url`` (SQLite or PostgreSQL); the service migrates it at start."""

    SERVICE = SERVICE
    MIGRATIONS = MIGRATIONS

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._statements = _Statements.of(self.dialect)

    def close(self) -> None:
        self.dispose()

    # -- writing ---------------------------------------------------------------------
    def apply(self, event: CatalogueEvent) -> Applied:
        """Index ``event`` durably; the same event again, or late, converges to the same rows."""
        return self.apply_all([event])[0]

    def apply_all(self, batch: Sequence[CatalogueEvent]) -> list[Applied]:
        """Index a batch of events in one transaction, with the rows they would leave one by one.

        Each submission of the batch is folded once, from all its events (the batch's and
        those kept before), so each event's ``Applied`` holds its submission's record after
        the whole batch: what one by one the last of them would have said. Locked on every
        sample of the batch, so a replica writing one of them waits, as it would for one event.
        """
        if not batch:
            return []
        samples = {sample_key(e.submission.region, e.submission.sample_id) for e in batch}
        with self.writing(locks=samples) as conn:
            # One INSERT for the batch; it returns the ids it kept (not those kept before).
            kept = set(conn.execute(self._statements.keep_event, [event_row(e) for e in batch]).scalars())
            new = []
            for e in batch:  # an event twice in one batch is new the first time only
                new.append(e.id in kept)
                kept.discard(e.id)
            submissions = sorted({e.submission.submission_id for e in batch})
            # Only what this batch kept is taken as it came: a redelivered id keeps its first row.
            fresh = {e.id: e for e, n in zip(batch, new, strict=True) if n}
            histories = self._histories(conn, submissions, fresh)
            records = {sid: fold(histories[sid]) for sid in submissions}
            self._write_submissions(conn, [records[sid] for sid in submissions])
            # Every sample a submission was ever said to be of: one it left loses its row.
            touched = {
                (e.submission.region, e.submission.sample_id) for sid in submissions for e in histories[sid]
            }
            self._refresh_samples(conn, sorted(touched))
        return [Applied(records[e.submission.submission_id], new=n) for e, n in zip(batch, new, strict=True)]

    def _histories(
        self, conn: Connection, submission_ids: Sequence[str], batch: Mapping[str, CatalogueEvent]
    ) -> dict[str, list[CatalogueEvent]]:
        """The kept events of each submission, read in a few queries rather than one each.

        An event this batch kept (``fresh``) is taken as it came rather than read back: its
        data was checked as it was decoded, and checking it again is most of a replay's
        cost. Events kept before are read back and checked as ever."""
        found: dict[str, list[CatalogueEvent]] = {sid: [] for sid in submission_ids}
        for start in range(0, len(submission_ids), _SUBMISSIONS_PER_READ):
            chunk = submission_ids[start : start + _SUBMISSIONS_PER_READ]
            rows = conn.execute(
                select(
                    t.events.c.event_id,
                    t.events.c.submission_id,
                    t.events.c.time,
                    t.events.c.source,
                    t.events.c.trace_id,
                    t.events.c.type,
                    t.events.c.data,
                ).where(t.events.c.submission_id.in_(chunk))
            ).all()
            for r in rows:
                if r.event_id in batch:
                    found[r.submission_id].append(batch[r.event_id])
                    continue
                found[r.submission_id].append(
                    CatalogueEvent(
                        id=r.event_id,
                        time=r.time,
                        source=r.source,
                        trace_id=r.trace_id,
                        data=_MODELS[r.type].model_validate_json(r.data),
                    )
                )
        return found

    def _write_submissions(self, conn: Connection, records: Sequence[SubmissionRecord]) -> None:
        """Upsert the submissions and their files, one statement of each for the batch."""
        conn.execute(self._statements.submission, [submission_row(record) for record in records])
        files = [row for record in records for row in file_rows(record)]
        if files:
            conn.execute(self._statements.files, files)
            self._apply_placements(conn, {(f["region"], f["sample_id"]) for f in files})

    def _refresh_samples(self, conn: Connection, samples: Sequence[tuple[Region, str]]) -> None:
        """Recompute each sample's row from its submissions; a sample left with none loses it."""
        s = t.submissions
        # One round trip for many samples: their submissions, each with its file count (a
        # round trip costs more than the rows on PostgreSQL, where ingest is bound by them).
        nfiles = (
            select(func.count())
            .select_from(t.files)
            .where(t.files.c.submission_id == s.c.submission_id)
            .scalar_subquery()
            .label("nfiles")
        )
        for start in range(0, len(samples), _SUBMISSIONS_PER_READ):
            chunk = samples[start : start + _SUBMISSIONS_PER_READ]
            wanted = [(region.value, sample_id) for region, sample_id in chunk]
            rows_of: dict[tuple[str, str], list[Any]] = {key: [] for key in wanted}
            for row in conn.execute(select(s, nfiles).where(tuple_(s.c.region, s.c.sample_id).in_(wanted))):
                rows_of[(row.region, row.sample_id)].append(row)
            shown, gone = [], []
            for (region, sample_id), rows in rows_of.items():
                outcomes = [SubmissionOutcome(r.submission_id, r.received_at, r.status) for r in rows]
                current = current_submission(outcomes)
                if current is None:
                    gone.append((region, sample_id))
                    continue
                row = next(r for r in rows if r.submission_id == current.submission_id)
                submissions = sum(1 for o in outcomes if o.status is not None)
                shown.append(sample_row(row._mapping, row.nfiles, submissions))
            if gone:  # one statement, not one a sample: a replay's first events all come here
                conn.execute(
                    delete(t.samples).where(tuple_(t.samples.c.region, t.samples.c.sample_id).in_(gone))
                )
            if shown:
                conn.execute(self._statements.sample, shown)

    # -- reading ---------------------------------------------------------------------
    def search(self, filters: SampleFilters, scope: Region | None = None) -> SamplePage:
        """A page of samples, newest received first; ``scope`` confines a region's caller."""
        c = t.samples.c
        query = (
            select(t.samples)
            .order_by(c.received_at.desc(), c.region.desc(), c.sample_id.desc())
            .limit(filters.limit + 1)
        )
        if scope is not None:
            query = query.where(c.region == scope.value)
        if filters.region is not None:
            query = query.where(c.region == filters.region.value)
        if filters.analysis is not None:
            query = query.where(c.analysis_type == filters.analysis.value)
        if filters.status is not None:
            query = query.where(c.status == filters.status.value)
        if filters.received_since is not None:
            query = query.where(c.received_at >= filters.received_since)
        if filters.received_before is not None:
            query = query.where(c.received_at < filters.received_before)
        after = filters.after
        if after is not None:
            query = query.where(
                tuple_(c.received_at, c.region, c.sample_id)
                < (after.received_at, after.region.value, after.sample_id)
            )
        with self.reading() as conn:
            if filters.q:
                query = query.where(self._matching(conn, filters.q.lower()))
            rows = conn.execute(query).all()
        items = [_summary(r) for r in rows[: filters.limit]]
        next_cursor = None
        if len(rows) > filters.limit:
            last = items[-1]
            next_cursor = Cursor(last.received_at, last.region, last.sample_id).encode()
        return SamplePage(items=items, next_cursor=next_cursor, limit=filters.limit)

    def _matching(self, conn: Connection, term: str) -> ColumnElement[bool]:
        """The ``q`` condition: a substring of the lowercased search column.

        A common term (a department) is best found by walking the newest-first index until a
        page is full; a rare one (a pseudonym) by a trigram index, else the walk scans every
        row. PostgreSQL's planner chooses between its pg_trgm index and the walk itself;
        SQLite's cannot, so a capped count on its FTS5 trigram index chooses here.
        """
        c = t.samples.c
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        walk = c.search.like(f"%{escaped}%", escape="\\")
        if conn.dialect.name != "sqlite" or len(term) < 3 or escaped != term:
            return walk  # trigrams need 3 characters; FTS5's LIKE takes no ESCAPE clause
        hits = select(SAMPLES_FTS.c.rowid).where(SAMPLES_FTS.c.search.like(f"%{term}%"))
        found = conn.execute(select(func.count()).select_from(hits.limit(RARE_TERM).subquery())).scalar_one()
        if found >= RARE_TERM:
            return walk
        return literal_column("catalogue_samples.rowid").in_(hits)

    # -- where the archive keeps each file ------------------------------------------------
    def _archived_file(self, region: Region, sample_id: str, path: str) -> ColumnElement[bool]:
        """The catalogue's files of the archive's body at ``path`` (relative to the archive
        root, as tier-moved and the recall events name it; the catalogue keeps the URL)."""
        return (
            (t.files.c.region == region.value)
            & (t.files.c.sample_id == sample_id)
            & t.files.c.url.endswith("/" + path, autoescape=True)
        )

    def tier_moved(self, region: Region, sample_id: str, path: str, tier: str) -> int:
        """The body is on ``tier`` now (the archive's name; cold is shown as tape): the files
        changed. Kept as the body's placement too, for files the catalogue learns later."""
        shown = CATALOGUE_TIERS[tier]
        with self.writing(lock=sample_key(region, sample_id)) as conn:
            self._place(conn, region, sample_id, path, {"tier": shown})
            where = self._archived_file(region, sample_id, path) & (t.files.c.tier != shown)
            return int(conn.execute(update(t.files).where(where).values(tier=shown)).rowcount)

    def _place(self, conn: Connection, region: Region, sample_id: str, path: str, values: dict[str, Any]) -> None:
        key = {"region": region.value, "sample_id": sample_id, "path": path}
        p = t.placements
        where = (p.c.region == region.value) & (p.c.sample_id == sample_id) & (p.c.path == path)
        if conn.execute(update(p).where(where).values(**values)).rowcount == 0:
            conn.execute(insert(p).values(**key, **values))

    def _apply_placements(self, conn: Connection, samples: set[tuple[str, str]]) -> None:
        """Give files just written what the archive said of their bodies before they were known."""
        p = t.placements
        for region, sample_id in sorted(samples):
            placed = conn.execute(
                select(p).where(p.c.region == region, p.c.sample_id == sample_id)
            ).mappings().all()
            for place in placed:
                values = {"tier": place["tier"]} if place["tier"] is not None else {}
                if place["recall_id"] is not None:
                    values |= {k: place[k] for k in ("recall_id", "recall_state", "recall_expected_at")}
                if values:
                    where = self._archived_file(Region(region), sample_id, place["path"])
                    conn.execute(update(t.files).where(where).values(**values))

    def recall_told(
        self,
        region: Region,
        sample_id: str,
        path: str,
        recall_id: str,
        state: str,
        expected_at: datetime | None,
    ) -> int:
        """Where the file's recall from tape stands, with the archive's estimate while under way."""
        with self.writing(lock=sample_key(region, sample_id)) as conn:
            where = self._archived_file(region, sample_id, path)
            values = {"recall_id": recall_id, "recall_state": state, "recall_expected_at": expected_at}
            self._place(conn, region, sample_id, path, values)
            return int(conn.execute(update(t.files).where(where).values(**values)).rowcount)

    def sample(self, region: Region, sample_id: str, scope: Region | None = None) -> SampleDetail | None:
        """Region ``region``'s sample ``sample_id``; None when absent or outside ``scope``."""
        if scope is not None and region is not scope:
            return None
        with self.reading() as conn:
            row = conn.execute(
                select(t.samples).where(_is_sample(t.samples, region, sample_id))
            ).one_or_none()
            if row is None:
                return None
            sub = conn.execute(
                select(t.submissions).where(t.submissions.c.submission_id == row.submission_id)
            ).one()
            file_rows = conn.execute(
                select(t.files)
                .where(t.files.c.submission_id == row.submission_id)
                .order_by(t.files.c.role, t.files.c.name)
            ).all()
            history = conn.execute(
                select(t.submissions.c.submission_id, t.submissions.c.received_at, t.submissions.c.status)
                .where(_is_sample(t.submissions, region, sample_id))
                .order_by(t.submissions.c.received_at.desc(), t.submissions.c.submission_id.desc())
            ).all()
        return SampleDetail(
            **_summary(row).model_dump(),
            verdict=sub.verdict,
            raw_bases=sub.raw_bases,
            raw_reads=sub.raw_reads,
            reference_profile=sub.reference_profile,
            policy=sub.policy,
            pipeline=sub.pipeline,
            pipeline_version=sub.pipeline_version,
            reference=sub.reference,
            attempts=sub.attempts,
            catalogue_files=[
                CatalogueFile(
                    role=f.role,
                    name=f.name,
                    kind=f.kind,
                    size=f.size,
                    sha256=f.sha256,
                    md5=f.md5,
                    tier=f.tier,
                    recall=None
                    if f.recall_id is None
                    else FileRecall(
                        recall_id=f.recall_id, state=f.recall_state, expected_at=f.recall_expected_at
                    ),
                    accepted=f.accepted,
                    conforms=f.conforms,
                    metrics=f.metrics,
                    problems=f.problems,
                    provenance=f.provenance,
                    trace_id=f.trace_id,
                )
                for f in file_rows
            ],
            history=[
                SubmissionRef(submission_id=h.submission_id, received_at=h.received_at, status=h.status)
                for h in history
            ],
        )

    def submission(self, submission_id: str, scope: Region | None = None) -> SubmissionDetail | None:
        with self.reading() as conn:
            sub = conn.execute(
                select(t.submissions).where(t.submissions.c.submission_id == submission_id)
            ).one_or_none()
            if sub is None or (scope is not None and sub.region != scope.value):
                return None
            timeline = conn.execute(
                select(t.events)
                .where(t.events.c.submission_id == submission_id)
                .order_by(t.events.c.time, t.events.c.event_id)
            ).all()
        return SubmissionDetail(
            submission_id=sub.submission_id,
            sample_id=sub.sample_id,
            region=sub.region,
            department=sub.department,
            patient_id=sub.patient_id,
            analysis_type=sub.analysis_type,
            platform=sub.platform,
            received_at=sub.received_at,
            received_month=sub.received_month,
            verdict=sub.verdict,
            status=sub.status,
            accepted=sub.accepted,
            genome_equivalents=micro_to_ge(sub.ge_micro) if sub.ge_micro is not None else None,
            trace_id=sub.trace_id,
            timeline=[
                TimelineEntry(
                    event_id=e.event_id,
                    type=e.type,
                    time=e.time,
                    source=e.source,
                    trace_id=e.trace_id,
                    summary=e.summary,
                )
                for e in timeline
            ],
        )

    def stats(self, scope: Region | None = None) -> Stats:
        """Samples and genome equivalents per region, month of receipt and status."""
        c = t.samples.c
        query = (
            select(c.region, c.received_month, c.status, func.count(), func.sum(c.ge_micro))
            .group_by(c.region, c.received_month, c.status)
            .order_by(c.region, c.received_month, c.status)
        )
        if scope is not None:
            query = query.where(c.region == scope.value)
        with self.reading() as conn:
            rows = conn.execute(query).all()
        out = [
            StatsRow(
                region=r[0],
                month=r[1],
                status=r[2],
                samples=int(r[3]),
                genome_equivalents=micro_to_ge(int(r[4] or 0)),
            )
            for r in rows
        ]
        return Stats(
            rows=out,
            samples=sum(r.samples for r in out),
            genome_equivalents=micro_to_ge(sum(int(r[4] or 0) for r in rows)),
        )

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every catalogue table, sorted by key, as JSON-ready values.

        Two catalogues built from the same events dump identically: the replay check.
        """
        out: dict[str, list[dict[str, Any]]] = {}
        with self.reading() as conn:
            for table in (t.events, t.submissions, t.samples, t.files, t.placements):
                key = [c for c in table.primary_key.columns]
                rows = conn.execute(select(table).order_by(*key)).mappings().all()
                out[table.name] = [{k: _plain(v) for k, v in row.items()} for row in rows]
        return out


def _is_sample(table: Table, region: Region, sample_id: str) -> ColumnElement[bool]:
    """The rows of ``table`` that are of one sample: its region and its pseudonym both."""
    return (table.c.region == region.value) & (table.c.sample_id == sample_id)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _summary(row: Any) -> SampleSummary:
    return SampleSummary(
        sample_id=row.sample_id,
        submission_id=row.submission_id,
        region=row.region,
        department=row.department,
        patient_id=row.patient_id,
        analysis_type=row.analysis_type,
        platform=row.platform,
        received_at=row.received_at,
        received_month=row.received_month,
        status=row.status,
        accepted=row.accepted,
        genome_equivalents=micro_to_ge(row.ge_micro),
        files=row.files,
        submissions=row.submissions,
        trace_id=row.trace_id,
        updated_at=row.updated_at,
    )
