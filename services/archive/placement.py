"""Where every archived body is: its tier, the digest of its stored bytes, its last access,
and the moves under way, in the archive service's database.

One row per body, keyed by its path relative to the archive root (the header store's key).
A body is on exactly the tier its row names; a copy on another tier exists only while a move
row says so, so after any crash the move rows tell which extra copy to finish or throw away.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.engine import RowMapping

from shared.config import FileKind
from shared.database import Store, UtcDateTime, lease_table
from shared.tiers import TierName

MoveState = str
"""``copying`` (the body is being written to the target), ``removing`` (the target holds it
and is recorded; the source copy goes), ``done``, ``failed`` (the target never verified)."""

metadata = MetaData()
files = Table(
    "archive_files",
    metadata,
    Column("path", String(1024), primary_key=True),
    Column("sample", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64)),
    Column("tier", String(8), nullable=False),
    Column("last_access", UtcDateTime(), nullable=False),
    Column("submission_id", String(64), comment="The submission that reported the body or whose run made it."),
)
moves = Table(
    "archive_moves",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", String(1024), nullable=False, index=True),
    Column("source", String(8), nullable=False),
    Column("target", String(8), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("emitted", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

recall_requests = Table(
    "archive_recall_requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("requester", String(255), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
recall_files = Table(
    "archive_recall_files",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("not_before", UtcDateTime(), nullable=False),
    Column("started_at", UtcDateTime()),
    Column("finished_at", UtcDateTime()),
    Column("pinned_until", UtcDateTime()),
    Column("emitted", Boolean, nullable=False, default=False),
    Column("announced", String(32)),
)

leases = lease_table(metadata, "archive")
"""The lease on the rounds (moves and recalls): one replica at a time runs them."""

MIGRATIONS = Path(__file__).parent / "migrations"
OPEN: tuple[MoveState, ...] = ("copying", "removing")


campaigns = Table(
    "archive_campaigns",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("sarek_version", String(32), nullable=False),
    Column("budget", BigInteger, nullable=False, comment="Bytes of raw reads recalled at once."),
    Column("state", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
campaign_runs = Table(
    "archive_campaign_runs",
    metadata,
    Column("campaign_id", String(32), primary_key=True),
    Column("submission_id", String(64), primary_key=True),
    Column("sample", String(255), nullable=False),
    Column("position", Integer, nullable=False, comment="Its place in the campaign's tape order."),
    Column("tape", String(1024), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("paths", Text, nullable=False, comment="Its raw bodies, one path a line."),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("updated_at", UtcDateTime(), nullable=False),
)
Index("archive_campaign_runs_by_state", campaign_runs.c.campaign_id, campaign_runs.c.state, campaign_runs.c.position)


@dataclass(frozen=True)
class ArchivedFile:
    path: str
    sample: str
    kind: FileKind
    size: int
    sha256: str | None
    """Of the body as stored, recorded at its first move; None until then."""
    tier: TierName
    last_access: datetime
    submission_id: str | None = None
    """None for a body learnt before the archive kept submissions."""

    @staticmethod
    def of(row: RowMapping) -> ArchivedFile:
        return ArchivedFile(**dict(row))


@dataclass(frozen=True)
class Move:
    id: int
    path: str
    source: TierName
    target: TierName
    state: MoveState
    reason: str | None
    emitted: bool
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def of(row: RowMapping) -> Move:
        return Move(**dict(row))


@dataclass(frozen=True)
class RecallFile:
    """One file of a recall request, in the WLCG tape REST states (SUBMITTED, STARTED,
    COMPLETED, FAILED, CANCELLED)."""

    request_id: str
    path: str
    state: str
    reason: str | None
    attempts: int
    not_before: datetime
    started_at: datetime | None
    finished_at: datetime | None
    pinned_until: datetime | None
    emitted: bool
    announced: str | None = None
    """The state and attempt last told in ``recall-updated`` (``STATE/attempts``); None: none yet."""

    @property
    def standing(self) -> str:
        """What :attr:`announced` compares against: a retry (SUBMITTED again) is news too."""
        return f"{self.state}/{self.attempts}"

    @staticmethod
    def of(row: RowMapping) -> RecallFile:
        return RecallFile(**dict(row))


class Busy(Exception):
    """The body has a move under way already."""


class PlacementStore(Store):
    """Small and synchronous; the service calls it through ``asyncio.to_thread``. Writes are
    conditional on the state they expect, so a replayed event or a second replica changes
    nothing twice."""

    SERVICE = "archive"
    MIGRATIONS = MIGRATIONS

    def __init__(self, url: str) -> None:
        super().__init__(url, migrate=True)

    def learn(
        self, path: str, sample: str, kind: FileKind, size: int, now: datetime, submission_id: str | None = None
    ) -> bool:
        """Record a body that arrived on the hot tier; False if it is known already."""
        with self.writing() as conn:
            if conn.execute(select(files.c.path).where(files.c.path == path)).first():
                return False
            conn.execute(
                insert(files).values(
                    path=path,
                    sample=sample,
                    kind=kind,
                    size=size,
                    sha256=None,
                    tier="hot",
                    last_access=now,
                    submission_id=submission_id,
                )
            )
        return True

    def touched(self, path: str, now: datetime) -> None:
        """A reader used the body: its cooling starts again."""
        with self.writing() as conn:
            conn.execute(update(files).where(files.c.path == path).values(last_access=now))

    def file(self, path: str) -> ArchivedFile | None:
        with self.reading() as conn:
            row = conn.execute(select(files).where(files.c.path == path)).mappings().first()
        return ArchivedFile.of(row) if row else None

    def every_file(self) -> list[ArchivedFile]:
        with self.reading() as conn:
            rows = conn.execute(select(files).order_by(files.c.path)).mappings().all()
        return [ArchivedFile.of(r) for r in rows]

    def of_sample(self, sample: str) -> list[ArchivedFile]:
        with self.reading() as conn:
            rows = conn.execute(
                select(files).where(files.c.sample == sample).order_by(files.c.path)
            ).mappings()
            return [ArchivedFile.of(r) for r in rows.all()]

    def start_move(self, path: str, target: TierName, now: datetime) -> Move:
        """Open a move of ``path`` to ``target`` (:class:`Busy` if one is open)."""
        with self.writing() as conn:
            open_move = conn.execute(
                select(moves.c.id).where(moves.c.path == path, moves.c.state.in_(OPEN))
            ).first()
            if open_move:
                raise Busy(path)
            tier = conn.execute(select(files.c.tier).where(files.c.path == path)).scalar_one()
            if tier == target:
                raise ValueError(f"{path} is on {target} already")
            new = conn.execute(
                insert(moves).values(
                    path=path,
                    source=tier,
                    target=target,
                    state="copying",
                    emitted=False,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key
            assert new is not None
            row = conn.execute(select(moves).where(moves.c.id == new[0])).mappings().one()
        return Move.of(row)

    def move(self, move_id: int) -> Move:
        with self.reading() as conn:
            return Move.of(conn.execute(select(moves).where(moves.c.id == move_id)).mappings().one())

    def open_moves(self) -> list[Move]:
        with self.reading() as conn:
            rows = conn.execute(select(moves).where(moves.c.state.in_(OPEN)).order_by(moves.c.id)).mappings()
            return [Move.of(r) for r in rows.all()]

    def every_move(self) -> list[Move]:
        with self.reading() as conn:
            return [Move.of(r) for r in conn.execute(select(moves).order_by(moves.c.id)).mappings().all()]

    def moved(self, move: Move, sha256: str, now: datetime) -> bool:
        """The target holds the verified body: it is the body's tier from now on (one
        transaction: the file's row and the move's step change together)."""
        with self.writing() as conn:
            done = conn.execute(
                update(moves)
                .where(moves.c.id == move.id, moves.c.state == "copying")
                .values(state="removing", updated_at=now)
            ).rowcount
            if done:
                conn.execute(
                    update(files)
                    .where(files.c.path == move.path, files.c.tier == move.source)
                    .values(tier=move.target, sha256=sha256)
                )
        return bool(done)

    def finish(self, move: Move, state: MoveState, now: datetime, reason: str | None = None) -> None:
        with self.writing() as conn:
            conn.execute(
                update(moves)
                .where(moves.c.id == move.id, moves.c.state.in_(OPEN))
                .values(state=state, reason=reason, updated_at=now)
            )

    def unemitted(self) -> list[Move]:
        """Finished moves whose ``tier-moved`` the broker has not acknowledged."""
        with self.reading() as conn:
            rows = conn.execute(
                select(moves).where(moves.c.state == "done", moves.c.emitted.is_(False)).order_by(moves.c.id)
            ).mappings()
            return [Move.of(r) for r in rows.all()]

    def mark_emitted(self, move_id: int) -> None:
        with self.writing() as conn:
            conn.execute(update(moves).where(moves.c.id == move_id).values(emitted=True))

    # -- recalls ---------------------------------------------------------------------------

    def request_recall(self, request_id: str, requester: str, paths: list[str], now: datetime) -> bool:
        """Record a recall request of ``paths``, every file SUBMITTED; False (and nothing
        changed) if the request is known already, so a replayed request recalls nothing twice."""
        with self.writing() as conn:
            if conn.execute(select(recall_requests.c.id).where(recall_requests.c.id == request_id)).first():
                return False
            conn.execute(insert(recall_requests).values(id=request_id, requester=requester, created_at=now))
            for path in sorted(set(paths)):
                conn.execute(
                    insert(recall_files).values(
                        request_id=request_id,
                        path=path,
                        state="SUBMITTED",
                        attempts=0,
                        not_before=now,
                        emitted=False,
                    )
                )
        return True

    def recall_files(self, request_id: str | None = None, states: tuple[str, ...] = ()) -> list[RecallFile]:
        query = select(recall_files).order_by(recall_files.c.path, recall_files.c.request_id)
        if request_id is not None:
            query = query.where(recall_files.c.request_id == request_id)
        if states:
            query = query.where(recall_files.c.state.in_(states))
        with self.reading() as conn:
            return [RecallFile.of(r) for r in conn.execute(query).mappings().all()]

    def recall_requests(self) -> list[str]:
        with self.reading() as conn:
            rows = conn.execute(select(recall_requests.c.id).order_by(recall_requests.c.created_at)).all()
        return [r[0] for r in rows]

    def set_recall(self, file: RecallFile, expected: tuple[str, ...], **values: object) -> bool:
        """Change one file of a request, if it is still in one of the ``expected`` states."""
        with self.writing() as conn:
            changed = conn.execute(
                update(recall_files)
                .where(
                    recall_files.c.request_id == file.request_id,
                    recall_files.c.path == file.path,
                    recall_files.c.state.in_(expected),
                )
                .values(**values)
            ).rowcount
        return bool(changed)

    def unemitted_staged(self) -> list[RecallFile]:
        """Completed files whose ``file-staged`` the broker has not acknowledged."""
        return [f for f in self.recall_files(states=("COMPLETED",)) if not f.emitted]

    def mark_staged_emitted(self, file: RecallFile) -> None:
        self.set_recall(file, ("COMPLETED",), emitted=True)

    def unannounced(self) -> list[RecallFile]:
        """Files whose present state ``recall-updated`` has not told yet."""
        return [f for f in self.recall_files() if f.announced != f.standing]

    def mark_announced(self, file: RecallFile) -> None:
        """``file``'s state as it was read is told (a change since stays to be told)."""
        with self.writing() as conn:
            conn.execute(
                update(recall_files)
                .where(
                    recall_files.c.request_id == file.request_id,
                    recall_files.c.path == file.path,
                    recall_files.c.state == file.state,
                    recall_files.c.attempts == file.attempts,
                )
                .values(announced=file.standing)
            )
