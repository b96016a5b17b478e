"""What the catalogue knows of a submission: a pure function of the events it has seen.

The indexer never updates a row field by field as events arrive. It keeps every event it
consumed (the timeline) and folds a submission's events, sorted by (event time, event id),
into one record. The record therefore depends only on the *set* of events seen, never on
the order they were delivered in or on how often: a duplicate adds nothing to the set, a
late event takes its place in the sorted history, and a replay from an empty database
rebuilds the same rows. A harmonised event for a sample never seen before simply yields a
record from what that event carries; an earlier event that arrives later completes it.

A sample's catalogue row is the newest (by time of receipt) of its submissions that has an
outcome (rejected, harmonised or harmonisation failed): a resubmission supersedes a
rejection however the two are delivered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.envelope import Envelope, Headers
from shared.events import (
    CheckedFile,
    Harmonised,
    Indexed,
    OutputFile,
    SampleStatus,
    Submission,
    Validated,
    Verdict,
)

HARMONISED_ROLE = "harmonised"
"""File role of a harmonised output, beside the uploaded roles raw_reads and clinical_output."""
INITIAL_TIER = "hot"
"""Every file starts on the hot tier; the archive's tier-moved moves it to warm or tape."""
CATALOGUE_TIERS = {"hot": "hot", "warm": "warm", "cold": "tape"}
"""The archive's tier names as the catalogue shows them: the cold tier is tape."""

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")

CatalogueData = Validated | Harmonised


def trace_id_of(headers: Headers) -> str | None:
    """The W3C trace id carried by a record's ``traceparent`` header, if it has a valid one."""
    for key, value in headers:
        if key == "traceparent":
            match = _TRACEPARENT.match(value.decode(errors="replace").strip().lower())
            if match and match.group(1) != "0" * 32:
                return match.group(1)
    return None


def internal_location(url: str) -> str:
    """``url`` without user info, query or fragment: a location, never a credential or a signature."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class CatalogueEvent:
    """One consumed event as the catalogue keeps it: the timeline entry and its data."""

    id: str
    time: datetime
    source: str
    trace_id: str | None
    data: CatalogueData

    @property
    def type(self) -> str:
        return self.data.event_name

    @property
    def submission(self) -> Submission:
        return self.data.submission

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.time, self.id)

    @classmethod
    def from_envelope(cls, envelope: Envelope[Validated] | Envelope[Harmonised]) -> CatalogueEvent:
        return cls(
            id=envelope.id,
            time=envelope.time.astimezone(UTC),
            source=envelope.source,
            trace_id=trace_id_of(envelope.headers),
            data=envelope.data,
        )

    @property
    def is_outcome(self) -> bool:
        """A rejection or a harmonisation: what indexes a sample and is announced as ``indexed``."""
        return isinstance(self.data, Harmonised) or self.data.verdict is Verdict.REJECTED

    @property
    def summary(self) -> str:
        """One line for the timeline: what this event said about the submission."""
        if isinstance(self.data, Validated):
            return f"QC {self.data.verdict.value}"
        return f"harmonisation {self.data.status}"


@dataclass(frozen=True)
class FileRecord:
    """A catalogue file: an uploaded file (raw reads, clinical output) or a harmonised output."""

    role: str
    name: str
    kind: str
    url: str
    size: int
    sha256: str
    md5: str | None
    accepted: bool | None
    conforms: bool | None
    metrics: dict[str, Any]
    problems: list[dict[str, str]]
    provenance: str | None
    event_id: str
    trace_id: str | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.role, self.name)

    @classmethod
    def checked(cls, f: CheckedFile, event: CatalogueEvent) -> FileRecord:
        return cls(
            role=f.role.value,
            name=f.name,
            kind=f.detected_type,
            url=internal_location(f.url),
            size=f.size,
            sha256=f.sha256,
            md5=f.md5,
            accepted=f.accepted,
            conforms=f.conforms,
            metrics=dict(f.metrics),
            problems=[p.model_dump() for p in f.problems],
            provenance=None,
            event_id=event.id,
            trace_id=event.trace_id,
        )

    @classmethod
    def output(cls, f: OutputFile, event: CatalogueEvent) -> FileRecord:
        return cls(
            role=HARMONISED_ROLE,
            name=f.name,
            kind=f.kind,
            url=internal_location(f.url),
            size=f.size,
            sha256=f.sha256,
            md5=None,
            accepted=None,
            conforms=None,
            metrics={},
            problems=[],
            provenance=f.provenance,
            event_id=event.id,
            trace_id=event.trace_id,
        )


@dataclass
class SubmissionRecord:
    """A submission as the catalogue describes it, folded from its events."""

    submission: Submission
    first_event_at: datetime
    last_event_at: datetime
    trace_id: str | None = None
    verdict: Verdict | None = None
    status: SampleStatus | None = None
    accepted: bool | None = None
    genome_equivalents: Decimal | None = None
    raw_bases: int | None = None
    raw_reads: int | None = None
    reference_profile: str | None = None
    policy: str | None = None
    pipeline: str | None = None
    pipeline_version: str | None = None
    reference: str | None = None
    attempts: int | None = None
    files: dict[tuple[str, str], FileRecord] = field(default_factory=dict)

    @property
    def submission_id(self) -> str:
        return self.submission.submission_id

    @property
    def sample_id(self) -> str:
        return self.submission.sample_id

    @property
    def received_at(self) -> datetime:
        return self.submission.received_at.astimezone(UTC)

    @property
    def received_month(self) -> str:
        return self.submission.received_month

    @property
    def indexed(self) -> bool:
        """Has an outcome: shown as a sample, announced downstream. QC-accepted alone is not yet."""
        return self.status is not None

    def indexed_event(self) -> Indexed:
        """The ``indexed`` event announcing this submission's catalogue row to billing."""
        if self.status is None or self.genome_equivalents is None:
            raise ValueError(f"submission {self.submission_id} has no outcome to announce yet")
        return Indexed(
            submission=self.submission,
            status=self.status,
            accepted=bool(self.accepted),
            genome_equivalents=self.genome_equivalents,
            files=len(self.files),
        )


def _apply(record: SubmissionRecord, event: CatalogueEvent) -> None:
    data = event.data
    record.submission = data.submission
    record.last_event_at = event.time
    record.trace_id = event.trace_id or record.trace_id
    record.genome_equivalents = data.genome_equivalents
    record.raw_bases = data.raw_bases
    if isinstance(data, Validated):
        record.verdict = data.verdict
        record.accepted = data.verdict is Verdict.ACCEPTED
        record.raw_reads = data.raw_reads
        record.reference_profile = data.reference_profile
        record.policy = data.harmonisation.policy.value
        if data.verdict is Verdict.REJECTED:
            record.status = SampleStatus.REJECTED
            for f in data.files:
                file = FileRecord.checked(f, event)
                record.files[file.key] = file
        return
    # Only submissions that passed QC are harmonised, so a harmonised event implies acceptance.
    record.verdict = Verdict.ACCEPTED
    record.accepted = True
    record.status = (
        SampleStatus.HARMONISED if data.status == "succeeded" else SampleStatus.HARMONISATION_FAILED
    )
    record.pipeline = data.provenance.pipeline
    record.pipeline_version = data.provenance.pipeline_version
    record.reference = data.provenance.reference
    record.attempts = data.attempts
    for f in data.files:
        file = FileRecord.checked(f, event)
        record.files[file.key] = file
    for o in data.outputs:
        file = FileRecord.output(o, event)
        record.files[file.key] = file


def fold(events: Iterable[CatalogueEvent]) -> SubmissionRecord:
    """The record of one submission from the events seen for it, in any order, with duplicates."""
    unique = {e.id: e for e in events}
    history = sorted(unique.values(), key=lambda e: e.order)
    if not history:
        raise ValueError("a submission record needs at least one event")
    ids = {e.submission.submission_id for e in history}
    if len(ids) != 1:
        raise ValueError(f"events of several submissions folded together: {sorted(ids)}")
    first = history[0]
    record = SubmissionRecord(
        submission=first.submission, first_event_at=first.time, last_event_at=first.time
    )
    for event in history:
        _apply(record, event)
    return record


@dataclass(frozen=True)
class SubmissionOutcome:
    """What a sample row needs of one of its submissions."""

    submission_id: str
    received_at: datetime
    status: str | None


def current_submission(submissions: Sequence[SubmissionOutcome]) -> SubmissionOutcome | None:
    """The submission a sample row shows: the newest received one that has an outcome."""
    with_outcome = [s for s in submissions if s.status is not None]
    if not with_outcome:
        return None
    return max(with_outcome, key=lambda s: (s.received_at, s.submission_id))


def search_text(submission: Submission) -> str:
    """What the ``q`` filter matches: ids, pseudonyms, department and platform, lowercased."""
    return " ".join(
        (
            submission.sample_id,
            submission.patient_id,
            submission.submission_id,
            submission.department,
            submission.platform,
        )
    ).lower()
