"""A submission's validation: each file checked, then what the files say together.

The files are checked in parallel worker processes (:mod:`services.validator.checks`);
then come the checks that need several files (mates of a pair, the sample in CRAM and
VCF, the VCF's index, the declared role against the detected type), the national
guidelines for clinical output, the harmonisation policy, the verdict and the genome
equivalents. The service and ``genomhub validate`` share all of it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from services.validator import sniff as kinds
from services.validator.checks import FileFindings, check_file
from services.validator.genome_equivalents import genome_equivalents
from services.validator.guidelines import GuidelineSet, alignment_reasons, variant_reasons
from services.validator.harmonisation_policy import Candidate, Category, decide
from services.validator.pairs import MateFile, check_pairs
from services.validator.problems import has_errors, problem
from services.validator.references import decoding_reference
from services.validator.sources import ArchivedFile, Source, head, use_storage
from shared.config import ValidatorSettings
from shared.encryption import EncryptionError
from shared.events import (
    AnalysisType,
    FileRole,
    HarmonisationDecision,
    Verdict,
)
from shared.identifiers import contains_cpr
from shared.storage import ArchiveReader

T = TypeVar("T")


@dataclass(frozen=True)
class InputFile:
    name: str
    url: str
    role: FileRole | None = None
    """As declared by the uploader; None when checking offline (taken from the content)."""
    sha256: str = ""
    archived_size: int | None = None
    """The plaintext size ``file-received`` recorded, for a file in the archive: it is then
    read decrypted and held to that size. None for a plain file (``genomhub validate``)."""

    @property
    def source(self) -> Source:
        return self.url if self.archived_size is None else ArchivedFile(self.url, self.archived_size)


@dataclass
class FileOutcome:
    file: InputFile
    findings: FileFindings
    role: FileRole
    conforms: bool | None = None
    accepted: bool = False


@dataclass
class Outcome:
    verdict: Verdict
    files: list[FileOutcome]
    genome_equivalents: Decimal
    raw_bases: int
    raw_reads: int
    harmonisation: HarmonisationDecision
    reference_profile: str
    notes: list[str] = field(default_factory=list)


class InProcess(Executor):
    """Runs submitted work at once in this process: for tests and tiny inputs."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def worker_pool(
    workers: int,
    fork: bool = False,
    s3_endpoint: str | None = None,
    archive: ArchiveReader | None = None,
) -> ProcessPoolExecutor:
    """Worker processes for the checks, each reading ``s3://`` URLs from ``s3_endpoint`` and
    archived files with ``archive`` (the header store and the key, handed over once).

    A service has threads (the broker client, the HTTP server), so its workers are spawned:
    a fork would copy locks held by other threads. A single-threaded command may fork,
    which spares each worker the re-import of the whole ``genomhub`` command. A spawned
    worker starts from a fresh interpreter, so the archive's endpoint and reader are handed
    to it.
    """
    context = multiprocessing.get_context("fork" if fork else "spawn")
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=use_storage, initargs=(s3_endpoint, archive)
    )


def category(findings: FileFindings) -> Category:
    if findings.raw:
        return "raw"
    if findings.detected_type in (kinds.CRAM, kinds.BAM):
        return "alignment"
    if findings.detected_type == kinds.VCF:
        return "variants"
    if findings.detected_type in kinds.INDEX_TYPES:
        return "index"
    return "other"


def validate(
    files: list[InputFile],
    settings: ValidatorSettings,
    analysis_type: AnalysisType,
    executor: Executor,
    profile_name: str | None = None,
    reference_fasta: Path | None = None,
) -> Outcome:
    """``profile_name`` defaults to the configured profile; ``reference_fasta`` (which decodes
    CRAMs) to the configured FASTA (:func:`~services.validator.references.decoding_reference`)."""
    profile_name = profile_name or settings.reference.profile
    reference_fasta = decoding_reference(settings.reference.fasta, reference_fasta)
    sniffed = [_sniffed_kind(f.source) for f in files]
    need_bases = not any(k in (kinds.FASTQ, kinds.SPRING, kinds.TAR) for k in sniffed)
    futures = [
        executor.submit(
            check_file,
            f.name,
            f.source,
            profile_name,
            need_bases,
            reference_fasta,
            settings.spring_executable,
        )
        for f in files
    ]
    findings = [future.result() for future in futures]
    outcomes = [
        FileOutcome(f, found, f.role or _role_of(found)) for f, found in zip(files, findings, strict=True)
    ]
    _roles(outcomes)
    _pairs(outcomes, executor)
    _samples(outcomes)
    guideline = GuidelineSet(settings.guideline.version, profile_name, tuple(settings.guideline.pipelines))
    _conformance(outcomes, guideline)

    candidates = [
        Candidate(o.file.name, category(o.findings), not has_errors(o.findings.problems), o.conforms)
        for o in outcomes
    ]
    policy = decide(settings.policy.harmonisation_policy, candidates)
    for o in outcomes:
        o.accepted = policy.accepted[o.file.name]
        if o.file.name in policy.not_taken:
            o.findings.problems.append(
                problem(
                    "policy.clinical_output_not_accepted",
                    f"under the {settings.policy.harmonisation_policy.value} policy this file is not taken",
                )
            )
    verdict = Verdict.REJECTED if policy.rejected else Verdict.ACCEPTED
    raw = [o.findings for o in outcomes if o.findings.raw and o.accepted]
    raw_bases = sum(f.bases for f in raw)
    raw_reads = sum(f.reads for f in raw)
    aligned = sum(o.findings.bases for o in outcomes if category(o.findings) == "alignment" and o.accepted)
    ge = (
        genome_equivalents(settings.genome_equivalents, analysis_type, raw_bases, aligned)
        if verdict is Verdict.ACCEPTED
        else Decimal(0)
    )
    return Outcome(verdict, outcomes, ge, raw_bases, raw_reads, policy.decision, profile_name)


def _sniffed_kind(source: Source) -> str:
    """The kind of a file from its first bytes; one that does not decrypt is reported by its
    own check (:func:`~services.validator.checks.check_file`), here it is only unreadable."""
    try:
        return kinds.sniff(head(source)).kind
    except EncryptionError:
        return kinds.UNREADABLE


def _role_of(found: FileFindings) -> FileRole:
    return FileRole.RAW_READS if found.raw else FileRole.CLINICAL_OUTPUT


def _roles(outcomes: list[FileOutcome]) -> None:
    for o in outcomes:
        kind = o.findings.detected_type
        if kind in (kinds.EMPTY, kinds.TEXT, kinds.BINARY, kinds.CORRUPT_BGZF, kinds.UNREADABLE):
            continue
        actual = _role_of(o.findings)
        if o.role is not actual:
            o.findings.problems.append(
                problem(
                    "file.role_mismatch",
                    f"declared {o.role.value} but the content is {kind.upper()} ({actual.value})",
                )
            )


def _pairs(outcomes: list[FileOutcome], executor: Executor) -> None:
    """Mates, held to each other by :mod:`services.validator.pairs`."""
    fastqs = [o for o in outcomes if o.findings.detected_type == kinds.FASTQ and o.findings.reads]
    check_pairs([MateFile(o.file.name, o.file.source, o.findings, o.file.sha256) for o in fastqs], executor)


def _samples(outcomes: list[FileOutcome]) -> None:
    """A germline VCF holds one sample, named as the CRAM's @RG SM when both are reported.

    A sample name in a file's header (a VCF's column, an @RG SM) is metadata a lab typed,
    and labs type CPR numbers there. Such a file names its patient: it is an error, reported
    without the name, and no other problem quotes it, since problems reach the catalogue.
    """
    for o in outcomes:
        if any(contains_cpr(name) for name in o.findings.samples):
            o.findings.problems.append(
                problem(
                    "header.direct_identifier",
                    "a sample name in the file's header reads as a Danish CPR number; "
                    "files name samples by pseudonym",
                    "#CHROM" if o.findings.detected_type == kinds.VCF else "@RG SM",
                )
            )
    named = [o for o in outcomes if not any(contains_cpr(name) for name in o.findings.samples)]
    crams = [o for o in named if category(o.findings) == "alignment"]
    for o in named:
        variants = o.findings.variants
        if o.findings.detected_type != kinds.VCF or variants is None or not variants.header_read:
            continue
        samples = o.findings.samples
        if len(samples) != 1:
            o.findings.problems.append(
                problem(
                    "vcf.sample_count",
                    f"a germline VCF holds one sample; this holds {len(samples)}",
                    "#CHROM",
                )
            )
            continue
        for cram in crams:
            if cram.findings.samples and samples[0] not in cram.findings.samples:
                o.findings.problems.append(
                    problem(
                        "vcf.sample_mismatch",
                        f"VCF sample {samples[0]!r} is not {cram.file.name}'s @RG SM "
                        f"({', '.join(cram.findings.samples)})",
                        "#CHROM",
                    )
                )


def _conformance(outcomes: list[FileOutcome], guideline: GuidelineSet) -> None:
    index_names = {o.file.name for o in outcomes if o.findings.detected_type in (kinds.TABIX, kinds.CSI)}
    for o in outcomes:
        found = o.findings
        if category(found) == "alignment" and found.alignment is not None:
            reasons = alignment_reasons(found.alignment, guideline)
        elif category(found) == "variants" and found.variants is not None:
            indexed = any(f"{o.file.name}{ext}" in index_names for ext in (".tbi", ".csi"))
            reasons = variant_reasons(found.variants, indexed, guideline)
        else:
            continue
        if has_errors(found.problems):
            reasons.insert(0, "the file has errors")
        o.conforms = not reasons
        found.metrics["guideline"] = guideline.version
        found.metrics["guideline_reasons"] = "; ".join(reasons)
