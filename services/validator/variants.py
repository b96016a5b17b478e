"""VCF checks: version, contigs and their lengths, samples, compression and index, every record.

pysam parses the header and each record (htslib underneath); a record htslib cannot parse
raises, and is reported with its number. A BGZF VCF's end-of-file block is checked as for
BAM, since htslib reads a truncated one to its cut without complaint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pysam

from services.validator.alignments import BGZF_EOF, _reference_problems
from services.validator.problems import problem
from services.validator.references import Contig, Identification, Profile, identify
from shared.events import Problem


@dataclass
class VariantReport:
    metrics: dict[str, int | float | str | bool | None] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    version: str = ""
    reference: Identification | None = None
    bgzipped: bool = False
    sources: list[str] = field(default_factory=list)


def version_tuple(version: str) -> tuple[int, ...]:
    digits = version.removeprefix("VCFv")
    try:
        return tuple(int(p) for p in digits.split("."))
    except ValueError:
        return (0,)


def check_vcf(path: Path, compression: str, expected: Profile) -> VariantReport:
    report = VariantReport(bgzipped=compression == "bgzf")
    if compression == "gzip":
        report.problems.append(
            problem("vcf.not_bgzf", "gzip but not BGZF (bgzip): it cannot be indexed or read by region")
        )
    if compression == "bgzf":
        size = path.stat().st_size
        with path.open("rb") as handle:
            handle.seek(max(0, size - len(BGZF_EOF)))
            if handle.read() != BGZF_EOF:
                report.problems.append(
                    problem(
                        "vcf.truncated", "no BGZF end-of-file block: the file is cut short", f"byte {size}"
                    )
                )
                return report
    try:
        vf = pysam.VariantFile(str(path))
    except (OSError, ValueError) as exc:
        report.problems.append(problem("vcf.unreadable", f"htslib cannot read the header: {exc}"))
        return report
    with vf:
        header = vf.header
        report.version = str(header.version)
        report.samples = list(header.samples)
        for record in header.records:
            if record.key in ("source", "pipeline") and record.value:
                report.sources.append(str(record.value))
        if version_tuple(report.version) < (4, 0):
            report.problems.append(
                problem("vcf.bad_version", f"fileformat {report.version!r} is not VCF 4.x", "line 1")
            )
        contigs = [
            Contig(str(name), int(c.length) if c.length is not None else 0)
            for name, c in header.contigs.items()
        ]
        lacking = [c.name for c in contigs if c.length <= 0]
        if not contigs:
            report.problems.append(
                problem("vcf.no_contigs", "no ##contig lines: the reference cannot be checked", "header")
            )
        elif lacking:
            report.problems.append(
                problem(
                    "vcf.contig_without_length",
                    f"{len(lacking)} ##contig lines have no length (e.g. {', '.join(lacking[:3])})",
                    "header",
                )
            )
        else:
            report.reference = identify(contigs, expected)
            _reference_problems(report.reference, expected, report.problems, "##contig")
        records = 0
        try:
            for _ in vf:
                records += 1
        except (OSError, ValueError) as exc:
            report.problems.append(
                problem(
                    "vcf.bad_record", f"record {records + 1} cannot be parsed: {exc}", f"record {records + 1}"
                )
            )
    report.metrics.update(
        {
            "fileformat": report.version,
            "records": records,
            "samples": len(report.samples),
            "contigs": len(contigs),
            "bgzf": report.bgzipped,
            "reference": report.reference.flavour if report.reference else "",
        }
    )
    return report
