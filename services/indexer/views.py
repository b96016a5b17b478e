"""What the catalogue shows: the response models of the API and the CLI's ``--json``.

These models are the only way rows leave the catalogue, and the OpenAPI document is built
from them, so what is documented is what is sent. They hold metadata only. A file's
storage location is deliberately absent: it is an internal address (bucket, path) of NGC's
infrastructure, useless outside it and a map of it, and the catalogue may be shown beyond
NGC; a later data-out service resolves locations inside NGC from the database. Checksums,
sizes and the storage tier are shown, because they tell a reader what exists and how soon
it can be had (tape recalls are slow).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import AnalysisType, GenomeEquivalents, Region, SampleStatus, Verdict


class View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleSummary(View):
    """One catalogue row: a sample as its newest submission with an outcome describes it."""

    sample_id: str
    submission_id: str
    region: Region
    department: str
    patient_id: str = Field(description="The region's pseudonym of the patient; never a CPR number.")
    analysis_type: AnalysisType
    platform: str
    received_at: datetime
    received_month: str = Field(description="Month of receipt, Europe/Copenhagen (YYYY-MM).")
    status: SampleStatus
    accepted: bool = Field(description="Passed QC: counts toward the NNF refund.")
    genome_equivalents: GenomeEquivalents
    files: int = Field(description="Catalogue files of the shown submission.")
    submissions: int = Field(description="Submissions of this sample that have an outcome.")
    trace_id: str | None = Field(description="Trace of the newest event behind the row.")
    updated_at: datetime


class SamplePage(View):
    items: list[SampleSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    limit: int


class FileRecall(View):
    """The file's last recall from tape: under way (SUBMITTED, STARTED) with the archive's
    estimate of when it is staged, or how it ended."""

    recall_id: str
    state: str
    expected_at: datetime | None = Field(description="While under way: when the archive expects it staged.")


class CatalogueFile(View):
    """A file NGC holds for the sample: uploaded (raw reads, clinical output) or harmonised."""

    role: Literal["raw_reads", "clinical_output", "harmonised"]
    name: str
    kind: str = Field(description="Type detected from the content, or the harmonised output's kind.")
    size: int
    sha256: str
    md5: str | None
    tier: Literal["hot", "warm", "tape"]
    recall: FileRecall | None = Field(default=None, description="Its recall from tape, if it had one.")
    accepted: bool | None
    conforms: bool | None
    metrics: dict[str, Any]
    problems: list[dict[str, str]]
    provenance: str | None
    trace_id: str | None


class SubmissionRef(View):
    submission_id: str
    received_at: datetime
    status: SampleStatus | None


class SampleDetail(SampleSummary):
    verdict: Verdict | None
    raw_bases: int | None
    raw_reads: int | None
    reference_profile: str | None
    policy: str | None = Field(description="Harmonisation policy applied at QC.")
    pipeline: str | None
    pipeline_version: str | None
    reference: str | None
    attempts: int | None
    catalogue_files: list[CatalogueFile]
    history: list[SubmissionRef] = Field(description="Every submission of the sample, newest first.")


class TimelineEntry(View):
    event_id: str
    type: str
    time: datetime
    source: str
    trace_id: str | None
    summary: str


class SubmissionDetail(View):
    submission_id: str
    sample_id: str
    region: Region
    department: str
    patient_id: str
    analysis_type: AnalysisType
    platform: str
    received_at: datetime
    received_month: str
    verdict: Verdict | None
    status: SampleStatus | None = Field(description="Null while QC-accepted and not yet harmonised.")
    accepted: bool | None
    genome_equivalents: GenomeEquivalents | None
    trace_id: str | None
    timeline: list[TimelineEntry] = Field(description="Events the catalogue consumed, oldest first.")


class StatsRow(View):
    region: Region
    month: str = Field(description="Month of receipt, Europe/Copenhagen (YYYY-MM).")
    status: SampleStatus
    samples: int
    genome_equivalents: GenomeEquivalents


class Stats(View):
    rows: list[StatsRow]
    samples: int
    genome_equivalents: GenomeEquivalents
