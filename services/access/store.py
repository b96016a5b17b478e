"""The access service's durable state: its catalogue projection, the requests and their
decisions and revocations, the events still to emit, and the audit ledger.

Every change is one transaction that writes the state, the event it emits (into the outbox,
sent once the transaction committed and again by a timer until the broker took it) and its
ledger entry together, so no decision exists without its entry and its event. Writers are
serialised (SQLite ``BEGIN IMMEDIATE``; PostgreSQL one advisory lock): each ledger entry
links to the one before it, so two appends must never read the same head.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update

from services.access.discovery import KnownSample
from services.access.grants import Decision, Standing, standing
from services.access.ledger import GENESIS, Entry, chained
from services.access.objects import ArchivedObject
from services.access.tables import (
    decisions,
    department_keys,
    ledger,
    objects,
    outbox,
    recalls,
    requests,
    revocations,
    samples,
)
from shared.database import Store
from shared.events import (
    MODEL_BY_TYPE,
    AccessDecided,
    AccessRequested,
    AccessRevoked,
    AnalysisType,
    Deliverable,
    Event,
    Region,
)

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_KEY = 0x61636373  # the advisory lock of the access service's writers on PostgreSQL


class Conflict(Exception):
    """The change contradicts what is recorded (a second decision, revoking what is not granted)."""


@dataclass(frozen=True)
class RequestRecord:
    """A request with what became of it."""

    request: AccessRequested
    decision: AccessDecided | None
    revocation: AccessRevoked | None

    def standing(self, at: datetime) -> Standing:
        decided = self.decision
        return standing(
            None if decided is None else Decision(decided.granted, decided.decided_at, decided.valid_until),
            None if self.revocation is None else self.revocation.revoked_at,
            at,
        )


@dataclass(frozen=True)
class DepartmentKey:
    """A department's registered Crypt4GH public key: its working copies open with its secret half."""

    region: Region
    department: str
    public_key: bytes
    registered_by: str
    registered_at: datetime


@dataclass(frozen=True)
class Audit:
    """A ledger entry to append: who did what, about which regions' data."""

    actor: str
    action: str
    concerns: Iterable[str]
    detail: Mapping[str, Any]
    case_reference: str = ""
    request_id: str | None = None


def _padded(regions: Iterable[str]) -> str:
    return " " + " ".join(sorted(set(regions))) + " "


@dataclass(frozen=True)
class KnownRecall:
    """The recall from tape a file last had, as far as this service knows."""

    path: str
    recall_id: str
    state: str
    expected_at: datetime | None
    pinned_until: datetime | None
    updated_at: datetime

    @property
    def ended(self) -> bool:
        """COMPLETED, FAILED or CANCELLED: a file on tape again needs a new recall."""
        return self.state not in ("SUBMITTED", "STARTED")


class AccessStore(Store):
    """The access service's state at one database URL (SQLite embedded, PostgreSQL in production)."""

    SERVICE = "access"
    MIGRATIONS = MIGRATIONS

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        super().__init__(url, migrate=migrate, one_connection=True)

    # -- the catalogue's facts ------------------------------------------------------------
    def project(self, sample: KnownSample, event_id: str) -> bool:
        """Upsert one sample as the indexer announced it; False when nothing changed."""
        values = {
            "patient_id": sample.patient_id,
            "analysis_type": sample.analysis_type.value,
            "received_at": sample.received_at,
            "accepted": sample.accepted,
            "event_id": event_id,
        }
        where = (samples.c.region == sample.region.value) & (samples.c.sample_id == sample.sample_id)
        with self.writing(lock=LOCK_KEY) as conn:
            row = conn.execute(select(samples).where(where)).first()
            if row is None:
                conn.execute(
                    insert(samples).values(region=sample.region.value, sample_id=sample.sample_id, **values)
                )
                return True
            if row.event_id == event_id:
                return False
            conn.execute(update(samples).where(where).values(**values))
            return True

    def samples_of_patient(self, patient_id: str, region: Region | None = None) -> list[KnownSample]:
        query = select(samples).where(samples.c.patient_id == patient_id)
        if region is not None:
            query = query.where(samples.c.region == region.value)
        with self.reading() as conn:
            rows = conn.execute(query.order_by(samples.c.region, samples.c.sample_id)).all()
        return [_known(r) for r in rows]

    def samples_named(self, region: Region, sample_ids: Iterable[str]) -> list[KnownSample]:
        query = select(samples).where(
            samples.c.region == region.value, samples.c.sample_id.in_(list(sample_ids))
        )
        with self.reading() as conn:
            return [_known(r) for r in conn.execute(query.order_by(samples.c.sample_id)).all()]

    def project_objects(self, found: Iterable[ArchivedObject]) -> int:
        """Add the files of a harmonisation; a file known already keeps its row. Returns how many were new."""
        added = 0
        with self.writing(lock=LOCK_KEY) as conn:
            for item in found:
                if conn.execute(
                    select(objects.c.object_id).where(objects.c.object_id == item.object_id)
                ).first():
                    continue
                conn.execute(
                    insert(objects).values(
                        object_id=item.object_id,
                        region=item.region.value,
                        sample_id=item.sample_id,
                        name=item.name,
                        deliverable=item.deliverable.value,
                        size=item.size,
                        sha256=item.sha256,
                        url=item.url,
                        created_at=item.created_at,
                    )
                )
                added += 1
        return added

    def archived_object(self, object_id: str) -> ArchivedObject | None:
        with self.reading() as conn:
            r = conn.execute(select(objects).where(objects.c.object_id == object_id)).first()
        return None if r is None else _archived(r)

    def objects_of_samples(self, region: Region, sample_ids: Iterable[str]) -> list[ArchivedObject]:
        """The files of a region's samples that a working copy can be made of, by sample and name."""
        query = select(objects).where(
            objects.c.region == region.value, objects.c.sample_id.in_(sorted(set(sample_ids)))
        )
        with self.reading() as conn:
            rows = conn.execute(query.order_by(objects.c.sample_id, objects.c.name)).all()
        return [_archived(r) for r in rows]

    # -- the departments' keys --------------------------------------------------------------
    def register_key(self, key: DepartmentKey, audit: Audit) -> Entry:
        """Record (or replace) a department's key with its ledger entry, in one transaction."""
        where = (department_keys.c.region == key.region.value) & (
            department_keys.c.department == key.department
        )
        values = {
            "public_key": key.public_key.hex(),
            "registered_by": key.registered_by,
            "registered_at": key.registered_at,
        }
        with self.writing(lock=LOCK_KEY) as conn:
            if conn.execute(select(department_keys.c.region).where(where)).first() is None:
                conn.execute(
                    insert(department_keys).values(
                        region=key.region.value, department=key.department, **values
                    )
                )
            else:
                conn.execute(update(department_keys).where(where).values(**values))
            return self._append(conn, audit, key.registered_at)

    def department_keys(self, region: Region | None = None) -> list[DepartmentKey]:
        query = select(department_keys).order_by(department_keys.c.region, department_keys.c.department)
        if region is not None:
            query = query.where(department_keys.c.region == region.value)
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [
            DepartmentKey(
                Region(r.region), r.department, bytes.fromhex(r.public_key), r.registered_by, r.registered_at
            )
            for r in rows
        ]

    def department_key(self, region: Region, department: str) -> DepartmentKey | None:
        return next((k for k in self.department_keys(region) if k.department == department), None)

    # -- requests, decisions, revocations ---------------------------------------------------
    def create_request(self, event: AccessRequested, event_id: str, audit: Audit, at: datetime) -> Entry:
        with self.writing(lock=LOCK_KEY) as conn:
            conn.execute(
                insert(requests).values(
                    request_id=event.request_id,
                    owner=event.owner.value,
                    requester_region=event.requester.region.value,
                    document=event.model_dump_json(),
                    requested_at=event.requested_at,
                )
            )
            self._queue(conn, event, event_id, at)
            return self._append(conn, audit, at)

    def decide(self, event: AccessDecided, event_id: str, audit: Audit, at: datetime) -> Entry:
        with self.writing(lock=LOCK_KEY) as conn:
            if conn.execute(
                select(decisions.c.request_id).where(decisions.c.request_id == event.request_id)
            ).first():
                raise Conflict("the request is decided already: a decision is final")
            conn.execute(
                insert(decisions).values(
                    request_id=event.request_id,
                    granted=event.granted,
                    reason=event.reason,
                    decided_at=event.decided_at,
                    valid_until=event.valid_until,
                )
            )
            self._queue(conn, event, event_id, at)
            return self._append(conn, audit, at)

    def revoke(self, event: AccessRevoked, event_id: str, audit: Audit, at: datetime) -> Entry:
        with self.writing(lock=LOCK_KEY) as conn:
            record = self._record(conn, event.request_id)
            if record is None:
                raise Conflict("no such request")
            if record.revocation is not None:
                raise Conflict("the grant is revoked already")
            if record.decision is None or not record.decision.granted:
                raise Conflict("only a grant can be revoked; this request was not granted")
            conn.execute(
                insert(revocations).values(
                    request_id=event.request_id,
                    revoked_by=str(event.revoked_by),
                    reason=event.reason,
                    revoked_at=event.revoked_at,
                )
            )
            self._queue(conn, event, event_id, at)
            return self._append(conn, audit, at)

    def issue(self, event: Event, event_id: str, audit: Audit, at: datetime) -> Entry:
        """Record a delivery: its event (working-copy-issued) and its ledger entry together."""
        with self.writing(lock=LOCK_KEY) as conn:
            self._queue(conn, event, event_id, at)
            return self._append(conn, audit, at)

    @staticmethod
    def _record(conn: Connection, request_id: str) -> RequestRecord | None:
        row = conn.execute(select(requests.c.document).where(requests.c.request_id == request_id)).first()
        if row is None:
            return None
        request = AccessRequested.model_validate_json(row.document)
        decided = conn.execute(select(decisions).where(decisions.c.request_id == request_id)).first()
        revoked = conn.execute(select(revocations).where(revocations.c.request_id == request_id)).first()
        decision = (
            None
            if decided is None
            else AccessDecided(
                request_id=request_id,
                owner=request.owner,
                granted=decided.granted,
                decided_by=request.owner,
                reason=decided.reason,
                decided_at=decided.decided_at,
                valid_until=decided.valid_until,
            )
        )
        revocation = (
            None
            if revoked is None
            else AccessRevoked(
                request_id=request_id,
                owner=request.owner,
                revoked_by=revoked.revoked_by if revoked.revoked_by == "ngc" else Region(revoked.revoked_by),
                reason=revoked.reason,
                revoked_at=revoked.revoked_at,
            )
        )
        return RequestRecord(request, decision, revocation)

    def record(self, request_id: str) -> RequestRecord | None:
        with self.reading() as conn:
            return self._record(conn, request_id)

    def records(self, region: Region | None) -> list[RequestRecord]:
        """Requests a region made or owns (None: every request), newest first."""
        query = select(requests.c.request_id).order_by(requests.c.requested_at.desc())
        if region is not None:
            query = query.where(
                (requests.c.owner == region.value) | (requests.c.requester_region == region.value)
            )
        with self.reading() as conn:
            found = [self._record(conn, rid) for rid in conn.execute(query).scalars().all()]
        return [r for r in found if r is not None]

    # -- recalls from tape -----------------------------------------------------------------
    def recall_of(self, path: str) -> KnownRecall | None:
        with self.reading() as conn:
            row = conn.execute(select(recalls).where(recalls.c.path == path)).mappings().first()
        return KnownRecall(**dict(row)) if row else None

    def project_recall(self, told: KnownRecall) -> bool:
        """The archive told where a recall of a file stands: kept if it is the recall known
        for the file, or a new one under way after the last ended (a replay changes nothing)."""
        with self.writing(lock=LOCK_KEY) as conn:
            row = conn.execute(select(recalls).where(recalls.c.path == told.path)).mappings().first()
            if row is None:
                conn.execute(insert(recalls).values(**vars(told)))
                return True
            known = KnownRecall(**dict(row))
            if known.recall_id != told.recall_id and not (known.ended and not told.ended):
                return False
            conn.execute(update(recalls).where(recalls.c.path == told.path).values(**vars(told)))
            return True

    def ask_recall(self, asked: KnownRecall, event: Event, event_id: str) -> KnownRecall:
        """Join the recall under way for the file, or record this one and its
        recall-requested in one transaction: the recall a request waits for."""
        with self.writing(lock=LOCK_KEY) as conn:
            row = conn.execute(select(recalls).where(recalls.c.path == asked.path)).mappings().first()
            if row is not None and not KnownRecall(**dict(row)).ended:
                return KnownRecall(**dict(row))
            if row is None:
                conn.execute(insert(recalls).values(**vars(asked)))
            else:
                conn.execute(update(recalls).where(recalls.c.path == asked.path).values(**vars(asked)))
            self._queue(conn, event, event_id, asked.updated_at)
        return asked

    # -- the outbox ------------------------------------------------------------------------
    @staticmethod
    def _queue(conn: Connection, event: Event, event_id: str, at: datetime) -> None:
        """Write the event beside the change it announces; the same transaction commits both."""
        conn.execute(
            insert(outbox).values(
                event_id=event_id,
                ce_type=event.ce_type(),
                data=event.model_dump_json(),
                queued_at=at,
                emitted=False,
            )
        )

    def unemitted(self) -> list[tuple[str, Event]]:
        """Events written but not yet acknowledged by the broker, oldest first."""
        with self.reading() as conn:
            rows = conn.execute(
                select(outbox)
                .where(outbox.c.emitted.is_(False))
                .order_by(outbox.c.queued_at, outbox.c.event_id)
            ).all()
        return [(r.event_id, MODEL_BY_TYPE[r.ce_type].model_validate_json(r.data)) for r in rows]

    def mark_emitted(self, event_id: str) -> None:
        with self.writing(lock=LOCK_KEY) as conn:
            conn.execute(update(outbox).where(outbox.c.event_id == event_id).values(emitted=True))

    # -- the ledger ------------------------------------------------------------------------
    @staticmethod
    def _head(conn: Connection) -> tuple[int, str]:
        row = conn.execute(
            select(ledger.c.seq, ledger.c.sha256).order_by(ledger.c.seq.desc()).limit(1)
        ).first()
        return (0, GENESIS) if row is None else (int(row.seq), str(row.sha256))

    @classmethod
    def _append(cls, conn: Connection, audit: Audit, at: datetime) -> Entry:
        seq, previous = cls._head(conn)
        entry = chained(
            seq=seq + 1,
            at=at.isoformat(),
            actor=audit.actor,
            action=audit.action,
            request_id=audit.request_id,
            case_reference=audit.case_reference,
            concerns=audit.concerns,
            detail=audit.detail,
            prev_sha256=previous,
        )
        conn.execute(
            insert(ledger).values(
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                request_id=entry.request_id,
                case_reference=entry.case_reference,
                concerns=_padded(entry.concerns),
                detail=json.dumps(entry.detail, sort_keys=True),
                prev_sha256=entry.prev_sha256,
                sha256=entry.sha256,
            )
        )
        return entry

    def audit(self, audit: Audit, at: datetime) -> Entry:
        """Append one entry on its own (a discovery question, a refusal)."""
        with self.writing(lock=LOCK_KEY) as conn:
            return self._append(conn, audit, at)

    def entries(self, region: Region | None = None) -> list[Entry]:
        """The ledger in order; a region's slice is what concerns its data or was done by it."""
        query = select(ledger).order_by(ledger.c.seq)
        if region is not None:
            query = query.where(
                (ledger.c.actor == region.value) | ledger.c.concerns.like(f"% {region.value} %")
            )
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [
            Entry(
                seq=int(r.seq),
                at=r.at,
                actor=r.actor,
                action=r.action,
                request_id=r.request_id,
                case_reference=r.case_reference,
                concerns=tuple(r.concerns.split()),
                detail=json.loads(r.detail),
                prev_sha256=r.prev_sha256,
                sha256=r.sha256,
            )
            for r in rows
        ]

    def head(self) -> tuple[int, str]:
        """The newest entry's number and hash: what the chain-head event publishes."""
        with self.reading() as conn:
            return self._head(conn)


def _known(row: Any) -> KnownSample:
    return KnownSample(
        region=Region(row.region),
        sample_id=row.sample_id,
        patient_id=row.patient_id,
        analysis_type=AnalysisType(row.analysis_type),
        received_at=row.received_at,
        accepted=bool(row.accepted),
    )


def _archived(r: Any) -> ArchivedObject:
    return ArchivedObject(
        r.object_id,
        Region(r.region),
        r.sample_id,
        r.name,
        Deliverable(r.deliverable),
        int(r.size),
        r.sha256,
        r.url,
        r.created_at,
    )
