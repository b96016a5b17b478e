"""The events genomhub services exchange: one pydantic model per event type.

The models are the contract between services that never import each other. Each model's
JSON Schema is generated into ``shared/schemas/`` (``genomhub schemas write``) and checked in,
so that a regional uploader writing in any language can validate what it emits; a test fails
when a model and its checked-in schema drift apart.

Every event carries the submission's context, so that no service needs another service's
database to act on an event, and a replay of one topic alone is enough to rebuild a stage.
Amounts of money are integer øre; genome equivalents are Decimals (strings in JSON): neither
is ever a float.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

SCHEMA_DIR = Path(__file__).parent / "schemas"
TYPE_PREFIX = "dk.ngc.genomhub"

GenomeEquivalents = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=6),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
"""Genome equivalents (genomækvivalenter): exact decimals, written as strings in JSON."""

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Md5 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Pseudonym = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]
Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]

COPENHAGEN = ZoneInfo("Europe/Copenhagen")


def month_of(moment: datetime) -> str:
    """The month (``YYYY-MM``) of an aware instant on Copenhagen's calendar.

    NGC counts a sample in the month it was received in Danish time: received at 23:30
    UTC on 31 January (00:30 on 1 February in Copenhagen), it is February's. The catalogue
    and the refund accounting must agree on this, so both ask here.
    """
    if moment.tzinfo is None:
        raise ValueError("a moment of receipt must carry its time zone")
    return moment.astimezone(COPENHAGEN).strftime("%Y-%m")


class Region(StrEnum):
    """The five Danish regions that report genomes."""

    HOVEDSTADEN = "hovedstaden"
    SJAELLAND = "sjaelland"
    NORDJYLLAND = "nordjylland"
    MIDTJYLLAND = "midtjylland"
    SYDDANMARK = "syddanmark"


class AnalysisType(StrEnum):
    WGS = "WGS"
    WES = "WES"
    PANEL = "panel"
    LONG_READ_WGS = "long-read WGS"


class FileRole(StrEnum):
    RAW_READS = "raw_reads"
    CLINICAL_OUTPUT = "clinical_output"


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class HarmonisationPolicy(StrEnum):
    """The four models of the 2026 working group (design.md section 6)."""

    HARMONISE_AND_STORE = "harmonise-and-store"
    INTERNATIONAL = "international"
    PARTIAL = "partial"
    NATIONAL = "national"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Submission(Strict):
    """Who reported which sample, and when NGC received it; carried by every event."""

    submission_id: str = Field(min_length=1, max_length=64)
    region: Region
    department: str = Field(min_length=1, max_length=128)
    sample_id: Pseudonym
    patient_id: Pseudonym
    analysis_type: AnalysisType
    platform: str = Field(min_length=1, max_length=64)
    received_at: AwareDatetime

    @property
    def received_month(self) -> str:
        return month_of(self.received_at)


class StoredFile(Strict):
    """A file as archived by the receiver: where it is and what its bytes hash to."""

    name: str = Field(min_length=1, max_length=255)
    role: FileRole
    url: str
    size: int = Field(ge=0)
    sha256: Sha256
    md5: Md5


class Problem(Strict):
    """One thing wrong with a file, with a stable code that uploaders can act on."""

    code: str = Field(pattern=r"^[a-z0-9_.]+$")
    message: str
    location: str = ""
    severity: Literal["error", "warning"] = Field(
        default="error", description="An error keeps the file from being accepted; a warning does not."
    )


class CheckedFile(StoredFile):
    """A file after QC: its type as read from its content, its metrics and its problems."""

    detected_type: str
    metrics: dict[str, int | float | str | bool | None] = Field(default_factory=dict)
    problems: list[Problem] = Field(default_factory=list)
    conforms: bool | None = Field(
        default=None, description="Clinical output only: meets the national guideline set."
    )
    accepted: bool


class HarmonisationDecision(Strict):
    """What the configured policy makes of a submission: the one place that decided."""

    policy: HarmonisationPolicy
    needs_harmonisation: bool
    pipeline_inputs: list[str] = Field(default_factory=list, description="Names of raw files.")
    passthrough: list[str] = Field(
        default_factory=list, description="Names of conforming clinical files kept as harmonised."
    )
    reasons: list[str] = Field(default_factory=list)


class OutputFile(Strict):
    """A harmonised output: Sarek's CRAM/VCF and their indexes, or passed-through clinical output."""

    name: str
    kind: str
    url: str
    size: int = Field(ge=0)
    sha256: Sha256
    provenance: str


class Provenance(Strict):
    pipeline: str
    pipeline_version: str
    reference: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    duration_s: float = Field(ge=0)


class Event(Strict):
    """Base of every event's data. ``event_name`` names its topic and CloudEvents type."""

    event_name: ClassVar[str]

    @classmethod
    def ce_type(cls) -> str:
        return f"{TYPE_PREFIX}.{cls.event_name}.v1"

    @classmethod
    def schema_path(cls) -> Path:
        return SCHEMA_DIR / f"{cls.event_name}.v1.json"

    @abstractmethod
    def key(self) -> str:
        """The record key, which decides the partition and so the order events keep."""


SAMPLE_KEY_SEPARATOR = "/"
"""Between region and pseudonym in a sample's key: a Pseudonym never holds it, nor a Region."""


def sample_key(region: Region, sample_id: str) -> str:
    """A sample's one identity as text: ``<region>/<pseudonym>``, e.g. ``hovedstaden/S1``.

    Pseudonyms are the regions' own, so two regions may use the same one for two people's
    samples: only the pair names a sample. The separator cannot occur in either part, so the
    key splits back into exactly one (region, pseudonym).
    """
    return f"{region.value}{SAMPLE_KEY_SEPARATOR}{sample_id}"


class SubmissionEvent(Event):
    """An event about one submission; keyed by its sample, so a sample's events keep their order."""

    submission: Submission

    def key(self) -> str:
        """The sample's key, ``<region>/<pseudonym>`` (:func:`sample_key`): a second region's
        sample of the same pseudonym is another sample, on its own key."""
        return sample_key(self.submission.region, self.submission.sample_id)


class FileReceived(SubmissionEvent):
    event_name: ClassVar[str] = "file-received"
    files: list[StoredFile] = Field(min_length=1)


class Validated(SubmissionEvent):
    event_name: ClassVar[str] = "validated"
    verdict: Verdict
    files: list[CheckedFile] = Field(min_length=1)
    reference_profile: str
    genome_equivalents: GenomeEquivalents
    raw_bases: int = Field(ge=0)
    raw_reads: int = Field(ge=0)
    harmonisation: HarmonisationDecision


class Harmonised(SubmissionEvent):
    event_name: ClassVar[str] = "harmonised"
    status: Literal["succeeded", "failed"]
    files: list[CheckedFile] = Field(description="The validated input files, as QC saw them.")
    genome_equivalents: GenomeEquivalents
    raw_bases: int = Field(ge=0)
    outputs: list[OutputFile] = Field(default_factory=list)
    provenance: Provenance
    attempts: int = Field(ge=1)
    log_tail: str = ""


class SampleStatus(StrEnum):
    REJECTED = "rejected"
    HARMONISED = "harmonised"
    HARMONISATION_FAILED = "harmonisation_failed"


class Indexed(SubmissionEvent):
    event_name: ClassVar[str] = "indexed"
    status: SampleStatus
    accepted: bool = Field(description="Passed QC: the sample counts toward the refund.")
    genome_equivalents: GenomeEquivalents
    files: int = Field(ge=0, description="Catalogue file rows of the sample.")


class RegionRefund(Strict):
    region: Region
    genome_equivalents: GenomeEquivalents
    amount_ore: int = Field(ge=0)


class RefundCalculated(Event):
    """A closed month's statement; about no one submission, so keyed by the month."""

    event_name: ClassVar[str] = "refund-calculated"
    month: Month
    statement_id: str
    currency: Literal["DKK"] = "DKK"
    rate_dkk: int = Field(ge=0)
    total_genome_equivalents: GenomeEquivalents
    total_ore: int = Field(ge=0)
    balance_before_ore: int = Field(ge=0)
    balance_after_ore: int = Field(ge=0)
    regions: list[RegionRefund]
    closed_at: AwareDatetime

    def key(self) -> str:
        return self.month


EventModel = FileReceived | Validated | Harmonised | Indexed | RefundCalculated
EVENT_MODELS: tuple[type[Event], ...] = (
    FileReceived,
    Validated,
    Harmonised,
    Indexed,
    RefundCalculated,
)
MODEL_BY_TYPE: dict[str, type[Event]] = {m.ce_type(): m for m in EVENT_MODELS}


def render_schema(model: type[Event]) -> str:
    """The JSON Schema of an event's data, as checked in under ``shared/schemas/``."""
    schema = model.model_json_schema(mode="serialization")
    schema["$id"] = f"https://genomhub.ngc.dk/schemas/{model.event_name}.v1.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["x-cloudevents-type"] = model.ce_type()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas() -> list[Path]:
    SCHEMA_DIR.mkdir(exist_ok=True)
    written = []
    for model in EVENT_MODELS:
        model.schema_path().write_text(render_schema(model))
        written.append(model.schema_path())
    return written
