"""The national guideline set for clinical pipeline output, and whether a file meets it.

The working group's conditions for reporting a department's own CRAM and VCF instead of
(or beside) NGC's harmonised output: the production reference; coordinate-sorted CRAM 3.x
with @RG and duplicates marked; VCF 4.2 or later on the reference's contigs, bgzipped and
indexed; and provenance from a pipeline on the configured allow-list. Each unmet condition
is a reason, so a department knows what to change.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.validator.alignments import AlignmentReport
from services.validator.variants import VariantReport, version_tuple


@dataclass(frozen=True)
class GuidelineSet:
    version: str
    reference_profile: str
    pipelines: tuple[str, ...]
    min_cram: tuple[int, int] = (3, 0)
    min_vcf: tuple[int, int] = (4, 2)


def _allowed(texts: list[str], pipelines: tuple[str, ...]) -> bool:
    lowered = [t.lower() for t in texts]
    return any(p.lower() in t for p in pipelines for t in lowered)


def alignment_reasons(report: AlignmentReport, guideline: GuidelineSet) -> list[str]:
    reasons = []
    if report.kind != "cram":
        reasons.append(f"{report.kind.upper()}, not CRAM")
    elif tuple(int(x) for x in report.cram_version.split(".")) < guideline.min_cram:
        reasons.append(f"CRAM {report.cram_version}, guideline needs 3.x")
    if report.reference is None or not report.reference.matches_profile:
        build = (
            report.reference.build if report.reference and report.reference.build else "an unknown reference"
        )
        reasons.append(f"made against {build}, guideline needs {guideline.reference_profile}")
    if report.sort_order != "coordinate":
        reasons.append(f"sort order {report.sort_order or 'unset'}, guideline needs coordinate")
    if not report.has_read_group:
        reasons.append("no @RG")
    if not report.duplicates_marked:
        reasons.append("duplicates not marked (no marking program in @PG, no duplicate flags)")
    if not _allowed(report.programs, guideline.pipelines):
        reasons.append(f"no @PG from an allowed pipeline ({', '.join(guideline.pipelines)})")
    return reasons


def variant_reasons(report: VariantReport, indexed: bool, guideline: GuidelineSet) -> list[str]:
    reasons = []
    if version_tuple(report.version) < guideline.min_vcf:
        reasons.append(f"{report.version or 'no fileformat'}, guideline needs VCFv4.2 or later")
    if report.reference is None or not report.reference.matches_profile:
        reasons.append(f"contigs are not {guideline.reference_profile}'s")
    if not report.bgzipped:
        reasons.append("not bgzipped")
    if not indexed:
        reasons.append("no tabix/CSI index among the submission's files")
    if not _allowed(report.sources, guideline.pipelines):
        reasons.append(f"no ##source from an allowed pipeline ({', '.join(guideline.pipelines)})")
    return reasons
