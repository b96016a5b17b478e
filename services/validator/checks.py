"""One file's checks, as run in a worker process: sniff the content, then the checks of its kind.

:func:`check_file` is a plain function of picklable arguments so that the files of a
submission (R1 and R2 above all) are checked in parallel processes. It never raises for
bad input: every fault of the file becomes a problem. An exception out of it is a fault of
the validator, and is left to propagate (the service then dead-letters the event).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from services.validator import sniff as kinds
from services.validator.alignments import AlignmentReport, check_alignment
from services.validator.fastq import check_fastq
from services.validator.problems import problem
from services.validator.references import Identification, profile, reference_needed
from services.validator.sources import Source, as_fifo, as_local_path, head
from services.validator.spring import decompress, read_params
from services.validator.variants import VariantReport, check_vcf
from shared.encryption import EncryptionError, SegmentAuthenticationError
from shared.events import Problem

NAME_HINTS = {
    kinds.FASTQ: (".fastq", ".fq", ".fastq.gz", ".fq.gz", ".fastq.bgz"),
    kinds.BAM: (".bam",),
    kinds.UBAM: (".bam", ".ubam"),
    kinds.CRAM: (".cram",),
    kinds.VCF: (".vcf", ".vcf.gz", ".vcf.bgz"),
    kinds.SPRING: (".spring",),
}


@dataclass
class FileFindings:
    """Everything the submission-level checks need from one file."""

    name: str
    detected_type: str
    compression: str = "none"
    metrics: dict[str, int | float | str | bool | None] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    reads: int = 0
    bases: int = 0
    raw: bool = False
    read_number: int | None = None
    first_name: str = ""
    headers_digest: str = ""
    sequences_digest: str = ""
    """Digest of the first records' sequences: the same in two files only if they hold the same reads."""
    samples: list[str] = field(default_factory=list)
    alignment: AlignmentReport | None = None
    variants: VariantReport | None = None
    reference: Identification | None = None


def expected_type_from_name(name: str) -> str | None:
    lowered = name.lower()
    for kind in (kinds.FASTQ, kinds.CRAM, kinds.VCF, kinds.SPRING, kinds.BAM):
        if lowered.endswith(NAME_HINTS[kind]):
            return kind
    return None


def unreadable(exc: EncryptionError) -> Problem:
    """The problem of an archived file that does not decrypt, with the reason it does not."""
    where = f"segment {exc.segment}" if isinstance(exc, SegmentAuthenticationError) else ""
    return problem("archive.unreadable", f"the archived file cannot be read: {exc}", where)


def check_file(
    name: str,
    url: Source,
    profile_name: str,
    need_bases: bool = False,
    reference_fasta: Path | None = None,
    spring_executable: Path | None = None,
) -> FileFindings:
    """``reference_fasta`` decodes CRAMs and is what the synthetic profile is read from;
    ``spring_executable`` decompresses SPRING archives (without it they are reported).

    An archived file that does not decrypt, at its first segment or its last, is that and
    nothing else: what the checks made of the authentic bytes before the failure is dropped,
    since the file as a whole is not the one that was archived."""
    try:
        return _check_file(name, url, profile_name, need_bases, reference_fasta, spring_executable)
    except EncryptionError as exc:
        return FileFindings(name, kinds.UNREADABLE, problems=[unreadable(exc)])


def _check_file(
    name: str,
    url: Source,
    profile_name: str,
    need_bases: bool,
    reference_fasta: Path | None,
    spring_executable: Path | None,
) -> FileFindings:
    expected = profile(profile_name, reference_fasta)
    reference = reference_fasta
    sniffed = kinds.sniff(head(url))
    found = FileFindings(name, sniffed.kind, sniffed.compression)
    kind = sniffed.kind
    if kind == kinds.EMPTY:
        found.problems.append(problem("file.empty", "the file is empty (0 bytes)"))
    elif kind == kinds.FASTQ:
        _fastq(found, url)
    elif kind == kinds.CRAM and reference is None:
        found.problems.append(problem("cram.reference_required", reference_needed(profile_name)))
    elif kind in (kinds.BAM, kinds.CRAM):
        with as_local_path(url, f".{kind}") as path:
            report = check_alignment(path, kind, expected, reference, need_bases)
        found.detected_type = report.kind
        found.alignment = report
        found.metrics = dict(report.metrics)
        found.problems += report.problems
        found.samples = report.samples
        found.reference = report.reference
        if report.kind == "ubam":
            found.raw = True
            found.reads, found.bases = report.raw_reads, report.raw_bases
        else:
            found.reads = int(report.metrics.get("reads") or 0)
            found.bases = int(report.metrics.get("bases") or 0)
    elif kind == kinds.VCF:
        with as_local_path(url, ".vcf.gz" if sniffed.compression != "none" else ".vcf") as path:
            variants = check_vcf(path, sniffed.compression, expected)
        found.variants = variants
        found.metrics = dict(variants.metrics)
        found.problems += variants.problems
        found.samples = variants.samples
        found.reference = variants.reference
    elif kind in (kinds.SPRING, kinds.TAR):
        _spring(found, url, spring_executable)
    elif kind in kinds.INDEX_TYPES:
        pass
    elif kind == kinds.CORRUPT_BGZF:
        found.problems.append(
            problem(
                "bgzf.corrupt",
                "BGZF-compressed, but its first block does not decompress: the header (of a BAM, "
                "or of a bgzipped VCF or FASTQ) is corrupt, so neither the kind nor the content "
                "can be read",
                "byte 0",
            )
        )
    elif kind == kinds.SAM:
        found.problems.append(problem("file.sam_text", "uncompressed SAM text: report CRAM (or BAM) instead"))
    else:
        found.problems.append(
            problem(
                "file.unrecognised_format",
                f"the content is not FASTQ, BAM, CRAM, VCF or a SPRING archive (looks like {kind})",
                "byte 0",
            )
        )
    hinted = expected_type_from_name(name)
    actual = found.detected_type
    if (
        hinted is not None
        and actual not in (kinds.EMPTY, kinds.CORRUPT_BGZF)
        and hinted != actual
        and not (hinted == kinds.BAM and actual == kinds.UBAM)
    ):
        found.problems.append(
            problem(
                "file.name_mismatch",
                f"named like {hinted.upper()} but the content is {actual.upper()}; "
                "tools downstream trust the name, so it must match",
            )
        )
    found.metrics.setdefault("compression", found.compression)
    return found


def _fastq(found: FileFindings, url: Source) -> None:
    report = check_fastq(url)
    found.raw = True
    found.compression = report.compression
    found.metrics = report.metrics()
    found.problems += report.problems
    found.reads, found.bases = report.reads, report.bases
    found.read_number = report.read_number
    found.first_name = report.first_name
    found.headers_digest = report.headers_digest
    found.sequences_digest = report.sequences_digest


def _spring(found: FileFindings, url: Source, executable: Path | None) -> None:
    params = read_params(url)
    if params is None:
        found.detected_type = kinds.TAR
        found.problems.append(problem("file.unrecognised_format", "a tar archive without SPRING's cp.bin"))
        return
    found.detected_type = kinds.SPRING
    found.raw = True
    found.metrics.update(
        {
            "reads": params.num_reads,
            "paired_end": params.paired_end,
            "max_length": params.max_read_length,
            "long_reads": params.long_reads,
        }
    )
    found.reads = params.num_reads
    if executable is None:
        found.problems.append(
            problem(
                "spring.decompression_required",
                f"SPRING archive of {params.num_reads} reads: decompression required to check and count "
                "its bases; no spring program is configured (GENOMHUB_VALIDATOR_SPRING_EXECUTABLE)",
            )
        )
        return
    with as_fifo(url, ".spring") as archive, tempfile.TemporaryDirectory() as tmp:
        for fastq in decompress(executable, archive, Path(tmp)):
            part = check_fastq(fastq.as_uri())
            found.problems += part.problems
            found.bases += part.bases
        found.metrics["bases"] = found.bases
