"""The events genomhub services exchange: one pydantic model per event type.

The models are the contract between services that never import each other. Each model's
JSON Schema is generated into ``shared/schemas/`` (``genomhub schemas write``) and checked in,
so that a regional uploader writing in any language can validate what it emits; a test fails
when a model and its checked-in schema drift apart.

Every event carries the submission's context, so that no service needs another service's
database to act on an event, and a replay of one topic alone is enough to rebuild a stage.
Amounts of money are integer øre; genome equivalents are Decimals (strings in JSON): neither
is ever a float.

A record that fits the schema can still be impossible, and a record on the bus may come from
a producer that is not the service it claims to be. So the models hold the *meaning* too, in
this one place that every consumer passes on decode and every producer on emit
(``shared/envelope.py``): ids have the shape their issuer gives them and are plain path
segments (:mod:`shared.paths`); no identifier or typed field holds a CPR number
(:mod:`shared.identifiers`); a sample's genome equivalents are bounded; a moment of receipt
or a month lies within the service's life. Each refusal has its own error type, which
becomes the dead letter's code (:data:`REFUSAL_CODES`), so an operator sees why at once.

What NGC's services derive from a file's content (QC problems and metrics, a pipeline's log
tail, provenance) is not held to the CPR guard: it is full of digit groups (read names,
coordinates, timestamps) that would read as dates, and it names samples and files only by
the fields that are checked. The words of NGC's own vocabulary among them (a file's detected
type, an output's kind, the reference profile) are checked, since they hold no digit groups.
A statement id is derived from its month, so only its shape is checked.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from abc import abstractmethod
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.identifiers import contains_cpr, may_hold_cpr, minted_free_of_cpr
from shared.paths import MAX_NAME, file_name_problem, hidden_characters

SCHEMA_DIR = Path(__file__).parent / "schemas"
TYPE_PREFIX = "dk.ngc.genomhub"
SCHEMA_BASE = "https://genomhub.ngc.dk/schemas"
"""Where an event's JSON Schema is named: its ``$id`` and its records' ``ce_dataschema``."""

COPENHAGEN = ZoneInfo("Europe/Copenhagen")

UNSAFE_ID = "unsafe_id"
DIRECT_IDENTIFIER = "direct_identifier"
IMPOSSIBLE_GENOME_EQUIVALENTS = "impossible_genome_equivalents"
IMPOSSIBLE_TIME = "impossible_time"
INCONSISTENT = "inconsistent_event"
REFUSAL_CODES = frozenset(
    {UNSAFE_ID, DIRECT_IDENTIFIER, IMPOSSIBLE_GENOME_EQUIVALENTS, IMPOSSIBLE_TIME, INCONSISTENT}
)
"""The error types of the meaning checks below: a refused record's dead letter carries one."""

MAX_GENOME_EQUIVALENTS_PER_SAMPLE = Decimal(10)
"""No real sample reaches 10 genome equivalents (930 Gb of raw bases under the bases rule).

One genome equivalent is a 30x human genome (93 Gb). The deepest sequencing any clinical
protocol orders stays far below the bound: a long-read WGS at 100x is about 3.3 GE, a
tumour at 120x about 4 GE, and the analysis rule's weights are 1.0 at most. A value above it
is an error or a forgery, and one such value would take every region's refund for the
month (the rate is the balance divided by the month's total): a billion GE paid 0 DKK.
"""

SERVICE_EPOCH = datetime(2019, 1, 1, tzinfo=COPENHAGEN)
"""The first moment NGC could have received a sample: the Danish National Genome Center was
established by law in 2019. A receipt, a month or a close before it is impossible."""
FIRST_MONTH = "2019-01"
CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of this host's clock another host's may run; a moment later than that is in
the future, and no sample is received and no month closed in the future."""


MAX_COUNT = 2**63 - 1
"""The largest size, count or amount an event may carry: what a SQL BIGINT holds, where the
catalogue and billing store them. Python's integers have no bound, so a record with a
20-digit size fitted the schema and failed in the store instead of being refused."""

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
"""A size in bytes, a number of bases, reads or files, an amount of øre or kroner."""


def _refuse(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message)


def _no_cpr(value: str) -> str:
    if contains_cpr(value):
        # The value is never part of the message: it may be a CPR number.
        raise _refuse(DIRECT_IDENTIFIER, "looks like a Danish CPR number; events carry pseudonyms only")
    return value


def _segment(value: str) -> str:
    if not _SEGMENT.fullmatch(value):
        raise _refuse(
            UNSAFE_ID,
            "must be a plain path segment: a letter or digit, then letters, digits, '.', '_' or '-'",
        )
    return value


_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SUBMISSION_ID = re.compile(r"[0-9a-f]{32}")
_PATH_ESCAPE = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _submission_id(value: str) -> str:
    if not _SUBMISSION_ID.fullmatch(value):
        raise _refuse(UNSAFE_ID, "a submission id is 32 lower-case hex digits, as the receiver issues it")
    return _no_cpr(value)


def _statement_id(value: str) -> str:
    if not _UUID.fullmatch(value):
        raise _refuse(UNSAFE_ID, "a statement id is a lower-case UUID, as billing derives it")
    return value


def _file_name(value: str) -> str:
    _no_cpr(value)  # first: a CPR number is refused as such, whatever else is wrong
    problem = file_name_problem(value)
    if problem is not None:
        raise _refuse(UNSAFE_ID, "file name " + problem)
    return value


def _relative_path(value: str) -> str:
    for part in value.split("/"):
        _file_name(part)
    return value


def _archive_url(value: str) -> str:
    parts = urlsplit(value)
    segments = parts.path.split("/")
    # First, segment by segment: a CPR number is refused as such, whatever else is wrong.
    # (A URL that cannot hold one as a whole has no part that can: no need to look.)
    if may_hold_cpr(value):
        for segment in (parts.netloc, *segments, parts.query, parts.fragment):
            _no_cpr(segment)
    if parts.scheme not in ("file", "s3") or hidden_characters(value):
        raise _refuse(UNSAFE_ID, "an archive URL is file:// or s3:// without control characters")
    if _PATH_ESCAPE.search(parts.path):
        # The archive builds its paths from names without '%' (``file_name_problem``);
        # %2e%2e is '..' and %2f is '/' to whatever unquotes the URL. (A query, such as a
        # signature, is allowed: the catalogue keeps only the location.)
        raise _refuse(UNSAFE_ID, "an archive URL's path has no escaped '.', '/' or '\\'")
    if any(s in (".", "..") for s in segments):
        raise _refuse(UNSAFE_ID, "an archive URL has no '.' or '..' segments")
    return value


def _typed_text(value: str) -> str:
    _no_cpr(value)  # first: a CPR number is refused as such, whatever else is wrong
    if hidden_characters(value):
        raise _refuse(
            UNSAFE_ID, "control, format (e.g. bidirectional) and invisible characters are not allowed"
        )
    return value


def _within_service_life(moment: datetime) -> datetime:
    if moment < SERVICE_EPOCH or moment > datetime.now(UTC) + CLOCK_SKEW:
        raise _refuse(IMPOSSIBLE_TIME, "lies outside the service's life: before 2019 or in the future")
    return moment


def _month_within_service_life(month: str) -> str:
    if month < FIRST_MONTH or month > month_of(datetime.now(UTC) + CLOCK_SKEW):
        raise _refuse(IMPOSSIBLE_TIME, f"a month lies between {FIRST_MONTH} and the current month")
    return month


def _sample_genome_equivalents(value: Decimal) -> Decimal:
    if value > MAX_GENOME_EQUIVALENTS_PER_SAMPLE:
        raise _refuse(
            IMPOSSIBLE_GENOME_EQUIVALENTS,
            f"more than {MAX_GENOME_EQUIVALENTS_PER_SAMPLE} genome equivalents for one sample",
        )
    return value


GenomeEquivalents = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=6),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
"""Genome equivalents (genomækvivalenter): exact decimals, written as strings in JSON."""
SampleGenomeEquivalents = Annotated[
    GenomeEquivalents,
    AfterValidator(_sample_genome_equivalents),
]
"""One sample's genome equivalents: at most :data:`MAX_GENOME_EQUIVALENTS_PER_SAMPLE`."""

MICRO_GE = 10**6
"""Micro genome equivalents a genome equivalent: the events' 6 decimal places. Every store
keeps genome equivalents as integer micro-GE, so their sums are exact on SQLite and
PostgreSQL alike and the catalogue and billing count the same."""


def ge_to_micro(ge: Decimal) -> int:
    """Integer micro-GE of genome equivalents; more than 6 decimals is refused, never rounded,
    so no store can hold a different number than the event said."""
    try:
        micro = ge * MICRO_GE
        exact = micro == micro.to_integral_value()
    except InvalidOperation as exc:
        raise ValueError(f"genome equivalents {ge!r} are not a number") from exc
    if not exact:
        raise ValueError(f"genome equivalents {ge} have more than 6 decimals")
    return int(micro)


def micro_to_ge(micro: int) -> Decimal:
    """The genome equivalents of integer micro-GE, always with 6 decimals."""
    return (Decimal(micro) / MICRO_GE).quantize(Decimal("0.000001"))


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Md5 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Pseudonym = Annotated[
    str,
    Field(min_length=1, max_length=128),
    AfterValidator(_no_cpr),  # first: a CPR number is refused as such, whatever else is wrong
    AfterValidator(_segment),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*$"}
    ),
]
"""A region's pseudonym of a sample or patient: one plain path segment (it names the sample's
folder in the archive, so never ``.``, ``..`` or a leading dot or dash) and no CPR number."""
SubmissionId = Annotated[
    str,
    AfterValidator(_submission_id),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9a-f]{32}$"}),
]
"""The receiver's id of a submission (``new_submission_id``): 32 lower-case hex digits."""


def new_submission_id() -> str:
    """A fresh :data:`SubmissionId`, as the receiver issues one for each new submission.

    About one random id in 860 has ten hex digits in a row that read as a CPR number;
    such an id is drawn again (:func:`shared.identifiers.minted_free_of_cpr`).
    """
    return minted_free_of_cpr(lambda _: uuid.uuid4().hex)


StatementId = Annotated[
    str,
    AfterValidator(_statement_id),
    WithJsonSchema({"type": "string", "format": "uuid"}),
]
FileName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME),
    AfterValidator(_file_name),
]
"""A file's name: one path segment under its submission's folder (``file_name_problem``)."""
OutputName = Annotated[
    str,
    Field(min_length=1, max_length=1024),
    AfterValidator(_relative_path),
]
"""A harmonised output's path relative to its run's output folder: file-name segments."""
ArchiveUrl = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_archive_url)]
"""Where a file is in the archive; readers also check it lies under their own store."""
TypedText = Annotated[str, AfterValidator(_typed_text)]
"""Free text a person typed (a department, a platform): no control characters, no CPR number."""
Label = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_typed_text)]
"""A word of NGC's own vocabulary that the catalogue stores and shows (a file's detected
type, an output's kind, a reference profile): short, and held to the typed-text rule, since
a compromised producer could put anything there."""
Moment = Annotated[AwareDatetime, AfterValidator(_within_service_life)]
"""An aware instant within the service's life: not before 2019, not in the future."""
Month = Annotated[
    str,
    Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
    AfterValidator(_month_within_service_life),
]

CampaignId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
"""A reanalysis campaign's id (the archive service mints it when the campaign is planned)."""

SarekVersion = Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?([.-][0-9A-Za-z]+)*$", max_length=32)]
"""An nf-core/sarek release, as ``nextflow run -r`` names it (``3.5.1``)."""


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

    submission_id: SubmissionId
    region: Region
    department: TypedText = Field(min_length=1, max_length=128)
    sample_id: Pseudonym
    patient_id: Pseudonym
    analysis_type: AnalysisType
    platform: TypedText = Field(min_length=1, max_length=64)
    received_at: Moment

    @property
    def received_month(self) -> str:
        return month_of(self.received_at)


class StoredFile(Strict):
    """A file as archived by the receiver: where it is and what its bytes hash to."""

    name: FileName
    role: FileRole
    url: ArchiveUrl
    size: Count
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

    detected_type: Label
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
    pipeline_inputs: list[FileName] = Field(default_factory=list, description="Names of raw files.")
    passthrough: list[FileName] = Field(
        default_factory=list, description="Names of conforming clinical files kept as harmonised."
    )
    reasons: list[str] = Field(default_factory=list)


class OutputFile(Strict):
    """A harmonised output: Sarek's CRAM/VCF and their indexes, or passed-through clinical output."""

    name: OutputName
    kind: Label
    url: ArchiveUrl
    size: Count
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

    @classmethod
    @functools.cache
    def schema_uri(cls) -> str:
        """The URI of the data's JSON Schema: the schema's ``$id`` and every record's
        ``ce_dataschema``, so a reader finds the schema from the record alone."""
        return f"{SCHEMA_BASE}/{cls.schema_path().name}"

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
    reference_profile: Label
    genome_equivalents: SampleGenomeEquivalents
    raw_bases: Count
    raw_reads: Count
    harmonisation: HarmonisationDecision


class Harmonised(SubmissionEvent):
    event_name: ClassVar[str] = "harmonised"
    status: Literal["succeeded", "failed"]
    files: list[CheckedFile] = Field(description="The validated input files, as QC saw them.")
    genome_equivalents: SampleGenomeEquivalents
    raw_bases: Count
    outputs: list[OutputFile] = Field(default_factory=list)
    provenance: Provenance
    attempts: int = Field(ge=1, le=MAX_COUNT)
    log_tail: str = ""
    campaign_id: CampaignId | None = Field(
        default=None,
        description="The reanalysis campaign this run was for; none for the harmonisation at intake.",
    )


class SampleStatus(StrEnum):
    REJECTED = "rejected"
    HARMONISED = "harmonised"
    HARMONISATION_FAILED = "harmonisation_failed"


class Indexed(SubmissionEvent):
    event_name: ClassVar[str] = "indexed"
    status: SampleStatus
    accepted: bool = Field(description="Passed QC: the sample counts toward the refund.")
    genome_equivalents: SampleGenomeEquivalents
    files: Count = Field(description="Catalogue file rows of the sample.")


class RegionRefund(Strict):
    region: Region
    genome_equivalents: GenomeEquivalents
    amount_ore: Count


class RefundCalculated(Event):
    """A closed month's statement; about no one submission, so keyed by the month."""

    event_name: ClassVar[str] = "refund-calculated"
    month: Month
    statement_id: StatementId
    currency: Literal["DKK"] = "DKK"
    rate_dkk: Count
    total_genome_equivalents: GenomeEquivalents
    total_ore: Count
    balance_before_ore: Count
    balance_after_ore: Count
    regions: list[RegionRefund]
    closed_at: Moment

    @model_validator(mode="after")
    def _adds_up(self) -> RefundCalculated:
        """A statement is arithmetic: its totals are its regions' sums, its balance goes down by them."""
        if (
            sum((r.genome_equivalents for r in self.regions), Decimal(0)) != self.total_genome_equivalents
            or sum(r.amount_ore for r in self.regions) != self.total_ore
            or self.balance_before_ore - self.total_ore != self.balance_after_ore
            or len({r.region for r in self.regions}) != len(self.regions)
        ):
            raise _refuse(INCONSISTENT, "the statement's totals, regions and balances do not add up")
        if self.month > month_of(self.closed_at):
            raise _refuse(INCONSISTENT, "a month cannot be closed before it began")
        return self

    def key(self) -> str:
        return self.month


# -- data out (design.md section 10): the access service's events ---------------------------

_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def _request_id(value: str) -> str:
    if not _REQUEST_ID.fullmatch(value):
        raise _refuse(
            UNSAFE_ID, "an access request id is 32 lower-case hex digits, as the access service issues it"
        )
    return _no_cpr(value)


RequestId = Annotated[
    str,
    AfterValidator(_request_id),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9a-f]{32}$"}),
]
"""The access service's id of a request (and of the grant it may become)."""


def new_request_id() -> str:
    """A fresh :data:`RequestId`; never one the CPR guard refuses."""
    return minted_free_of_cpr(lambda _: uuid.uuid4().hex)


class Deliverable(StrEnum):
    """What a working copy may hold."""

    HARMONISED_CRAM = "harmonised-cram"
    HARMONISED_VCF = "harmonised-vcf"
    CLINICAL_OUTPUT = "clinical-output"
    RAW_READS = "raw-reads"


class Urgency(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


PATIENT_TREATMENT = "patient-treatment"
"""The one purpose the minutes allow a working copy for: concrete patient treatment."""


class SampleRef(Strict):
    """A sample as the owning region reported it: (region, pseudonym)."""

    region: Region
    sample_id: Pseudonym


GENOMIC_RANGE_FORM = "chr17, or chr17:43044294-43125482 counted as htsget does (0-based start, end excluded)"
"""How a person writes a genomic range (the command line's ``--range``, the portal's form)."""


def genomic_range_fields(text: str) -> dict[str, Any]:
    """``chr17`` or ``chr17:START-END`` as a :class:`GenomicRange`'s fields, or ValueError
    saying the form: what a person typed, before the request's own checks."""
    name, colon, span = text.strip().partition(":")
    start, dash, end = span.partition("-")
    if not name or (colon and not (dash and start.isdigit() and end.isdigit())):
        raise ValueError(f"{text!r} is not a genomic range: {GENOMIC_RANGE_FORM}")
    return {"reference_name": name, **({"start": int(start), "end": int(end)} if colon else {})}


class GenomicRange(Strict):
    """A region of the genome, htsget-style: a reference name and a 0-based half-open range."""

    reference_name: Label
    start: Count | None = None
    end: Count | None = None

    @model_validator(mode="after")
    def _ordered(self) -> GenomicRange:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise _refuse(INCONSISTENT, "a genomic range ends after it starts")
        return self


class Requester(Strict):
    """Who asks: the calling token's region, a department there, and the token's holder."""

    region: Region
    department: TypedText = Field(min_length=1, max_length=128)


class AccessEvent(Event):
    """An event about one access request: keyed by it, so its story keeps its order."""

    request_id: RequestId
    owner: Region = Field(description="The region that reported the samples: the one that decides.")

    def key(self) -> str:
        return self.request_id


class AccessRequested(AccessEvent):
    event_name: ClassVar[str] = "access-requested"
    requester: Requester
    samples: list[SampleRef] = Field(min_length=1, max_length=100)
    wants: list[Deliverable] = Field(min_length=1)
    genomic_ranges: list[GenomicRange] = Field(default_factory=list, max_length=100)
    purpose: Literal["patient-treatment"]
    case_reference: TypedText = Field(min_length=1, max_length=128)
    urgency: Urgency
    requested_at: Moment

    @model_validator(mode="after")
    def _one_owner(self) -> AccessRequested:
        if any(s.region != self.owner for s in self.samples):
            raise _refuse(INCONSISTENT, "every sample of a request is its owner's")
        return self


class AccessDecided(AccessEvent):
    event_name: ClassVar[str] = "access-decided"
    granted: bool
    decided_by: Region = Field(description="The owner's data steward decides: always the owner.")
    reason: TypedText = Field(default="", max_length=2000)
    decided_at: Moment
    valid_until: AwareDatetime | None = Field(default=None, description="A grant's end; none on a denial.")

    @model_validator(mode="after")
    def _coherent(self) -> AccessDecided:
        if self.decided_by != self.owner:
            raise _refuse(INCONSISTENT, "only the owning region decides on its data")
        if self.granted and (self.valid_until is None or self.valid_until <= self.decided_at):
            raise _refuse(INCONSISTENT, "a grant ends after it was decided")
        if not self.granted and (self.valid_until is not None or not self.reason.strip()):
            raise _refuse(INCONSISTENT, "a denial has a reason and no end")
        return self


class AccessRevoked(AccessEvent):
    event_name: ClassVar[str] = "access-revoked"
    revoked_by: Region | Literal["ngc"] = Field(
        description="The owner's data steward, or NGC's operator (`ngc`) in an emergency."
    )
    reason: TypedText = Field(min_length=1, max_length=2000)
    revoked_at: Moment

    @model_validator(mode="after")
    def _by_owner_or_ngc(self) -> AccessRevoked:
        if self.revoked_by not in ("ngc", self.owner):
            raise _refuse(INCONSISTENT, "only the owner or NGC revokes a grant")
        return self


class WorkingCopyIssued(AccessEvent):
    """Bytes of an archived file handed out under a grant, encrypted to the department's key.

    One per delivery, also when it ended early (revoked mid-stream, a body failing its
    check): ``complete`` says whether every byte promised went out, ``bytes_sent`` and
    ``sha256`` what did."""

    event_name: ClassVar[str] = "working-copy-issued"
    object_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="The DRS object handed out.")
    sample: SampleRef
    requester: Requester
    part: Literal["whole-file", "slice"] = Field(description="A whole file (header re-encrypted) or a slice.")
    recipient_key_sha256: Sha256 = Field(description="sha256 of the department's X25519 public key.")
    bytes_sent: Count
    sha256: Sha256 = Field(description="sha256 of the bytes sent, as sent (Crypt4GH).")
    complete: bool
    issued_at: Moment


class AuditHead(Event):
    """The audit ledger's head: whoever keeps these can later prove the hub did not rewrite history."""

    event_name: ClassVar[str] = "audit-head"
    entries: Count = Field(description="Entries in the ledger, the head included.")
    head_sha256: Sha256 = Field(description="The sha256 of the newest entry (canonical JSON).")
    published_at: Moment

    def key(self) -> str:
        return "audit"


class SpokeRevisionApplied(Event):
    """A spoke shows a revision of its feed: it held every entry up to it and its own state
    hash equalled the checkpoint's. The hub keeps the latest of each spoke, to show how far
    behind each one is (design.md section 11)."""

    event_name: ClassVar[str] = "spoke-revision-applied"
    region: Region = Field(description="The spoke: the region whose feed this is.")
    revision: Count = Field(description="The revision now shown.")
    upto: Count = Field(description="The feed sequence number of the last entry it covers.")
    state_hash: Sha256 = Field(description="The state hash the spoke computed and the checkpoint named.")
    samples: Count = Field(description="Samples the spoke shows at this revision.")
    applied_at: Moment

    def key(self) -> str:
        return self.region.value


Tier = Literal["hot", "warm", "cold"]
"""A storage tier of the archive: flash, disk, tape."""

RecallId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
"""The archive service's id of a recall request (derived from what asked for it)."""

ArchivedPath = Annotated[
    str,
    Field(min_length=1, max_length=4096),
    AfterValidator(_no_cpr),
    AfterValidator(_relative_path),
]
"""A body's path relative to the archive root (its header's key): file-name segments."""


HARMONISED_OUTPUTS = "harmonised"
"""The archive folder of the harmoniser's outputs (``harmonised/<submission>/...``): named by
submission, not by sample, so only the archive (which learnt each from its harmonised event)
knows the sample such a body belongs to."""


def _of_sample(path: str, region: Region, sample_id: str) -> bool:
    """Whether ``path`` can be a body of the sample: a body as received lies under
    ``<region>/<sample>/``; a harmoniser output under ``harmonised/``, which the archive checks."""
    head = path.split("/")[:2]
    return head == [region.value, sample_id] or head[0] == HARMONISED_OUTPUTS


class ArchiveEvent(Event):
    """An event about one archived body of a sample: keyed by the sample, so a sample's
    files keep the order of their moves and recalls."""

    region: Region
    sample_id: Pseudonym
    path: ArchivedPath

    @model_validator(mode="after")
    def _under_its_sample(self) -> ArchiveEvent:
        if not _of_sample(self.path, self.region, self.sample_id):
            raise _refuse(
                INCONSISTENT,
                "an archived body's path begins with its region and sample, or is a harmonised output",
            )
        return self

    def key(self) -> str:
        return sample_key(self.region, self.sample_id)


class TierMoved(ArchiveEvent):
    """A body now lives on another tier, verified there; its old copy is gone."""

    event_name: ClassVar[str] = "tier-moved"
    source: Tier
    target: Tier
    sha256: Sha256 = Field(description="Of the body's bytes as stored (a Crypt4GH body), not the plaintext.")
    moved_at: Moment

    @model_validator(mode="after")
    def _moved(self) -> TierMoved:
        if self.source == self.target:
            raise _refuse(INCONSISTENT, "a move goes to another tier than its source")
        return self


class FileStaged(ArchiveEvent):
    """A recalled body is readable, on ``tier``, until ``pinned_until``: what a waiting party consumes."""

    event_name: ClassVar[str] = "file-staged"
    recall_id: RecallId
    tier: Tier
    staged_at: Moment
    pinned_until: AwareDatetime

    @model_validator(mode="after")
    def _pinned_after_staging(self) -> FileStaged:
        if self.pinned_until <= self.staged_at:
            raise _refuse(INCONSISTENT, "a staged body is pinned until after it was staged")
        return self


RecallState = Literal["SUBMITTED", "STARTED", "COMPLETED", "FAILED", "CANCELLED"]
"""The WLCG tape REST states a recalled file goes through."""


class ReharmonisationRequested(Event):
    """A reanalysis campaign's submission has its raw reads readable (recalled from tape, or
    never there): the harmoniser runs it again with ``sarek_version``, as one more job of
    that submission (keyed by submission and version, so a replayed request runs nothing
    twice), from the inputs it validated at intake. Its harmonised event names the campaign."""

    event_name: ClassVar[str] = "reharmonisation-requested"
    campaign_id: CampaignId
    region: Region
    sample_id: Pseudonym
    submission_id: SubmissionId
    sarek_version: SarekVersion
    requested_at: Moment

    def key(self) -> str:
        return sample_key(self.region, self.sample_id)


class RecallRequested(Event):
    """Bodies on tape are needed (a working copy asked for one): the archive records the
    recall under ``recall_id`` (one recall per id, so a replayed request recalls nothing
    twice), gives it a drive, and ends each file in ``file-staged``."""

    event_name: ClassVar[str] = "recall-requested"
    recall_id: RecallId
    region: Region
    sample_id: Pseudonym
    paths: list[ArchivedPath] = Field(min_length=1, max_length=1000)
    requested_by: Label = Field(description="Who needs the files: a service and what for, never a person.")
    requested_at: Moment

    @model_validator(mode="after")
    def _of_its_sample(self) -> RecallRequested:
        if not all(_of_sample(p, self.region, self.sample_id) for p in self.paths):
            raise _refuse(
                INCONSISTENT,
                "a recall's bodies all begin with its region and sample, or are harmonised outputs",
            )
        return self

    def key(self) -> str:
        return sample_key(self.region, self.sample_id)


class RecallUpdated(ArchiveEvent):
    """Where one file of a recall stands now, and, while it is under way, when the recall
    scheduler expects it staged: what the catalogue shows and a DRS client is told to wait."""

    event_name: ClassVar[str] = "recall-updated"
    recall_id: RecallId
    state: RecallState
    expected_at: AwareDatetime | None = Field(
        default=None, description="While SUBMITTED or STARTED: the scheduler's estimate of when it is staged."
    )
    reason: Label | None = Field(default=None, description="Why a file FAILED or was retried.")
    updated_at: Moment

    @model_validator(mode="after")
    def _estimate_while_under_way(self) -> RecallUpdated:
        if (self.expected_at is not None) != (self.state in ("SUBMITTED", "STARTED")):
            raise _refuse(INCONSISTENT, "a recall has an estimate exactly while it is under way")
        return self


EventModel = (
    FileReceived
    | Validated
    | Harmonised
    | Indexed
    | RefundCalculated
    | AccessRequested
    | AccessDecided
    | AccessRevoked
    | WorkingCopyIssued
    | AuditHead
    | TierMoved
    | FileStaged
    | RecallRequested
    | RecallUpdated
    | ReharmonisationRequested
    | SpokeRevisionApplied
)
EVENT_MODELS: tuple[type[Event], ...] = (
    FileReceived,
    Validated,
    Harmonised,
    Indexed,
    RefundCalculated,
    AccessRequested,
    AccessDecided,
    AccessRevoked,
    WorkingCopyIssued,
    AuditHead,
    TierMoved,
    FileStaged,
    RecallRequested,
    RecallUpdated,
    ReharmonisationRequested,
    SpokeRevisionApplied,
)
MODEL_BY_TYPE: dict[str, type[Event]] = {m.ce_type(): m for m in EVENT_MODELS}


def render_schema(model: type[Event]) -> str:
    """The JSON Schema of an event's data, as checked in under ``shared/schemas/``."""
    schema = model.model_json_schema(mode="serialization")
    schema["$id"] = model.schema_uri()
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
