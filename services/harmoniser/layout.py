"""Sarek's output layout, and the one collector that reads it for both backends.

The local backend writes exactly the folders Sarek publishes, so the same collector takes a
sample's CRAM, VCF, their indexes, the reports and the pipeline information from either
backend's ``--outdir`` and copies them into the archive, hashing on the way. A PacBio sample
run by nf-core/pacvar has that pipeline's layout (``services.harmoniser.pacvar.PacvarLayout``),
read by the same collector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shared.events import OutputFile
from shared.paths import beneath
from shared.storage import ArchiveWriter, copy_into


class CollectError(Exception):
    """The run's output directory lacks what the pipeline must produce."""


class OutputLayout(Protocol):
    """Where a pipeline publishes one sample's files, relative to its ``--outdir``."""

    @property
    def reports(self) -> str:
        """The folder of per-sample reports ('' when the pipeline has none)."""
        ...

    def required(self) -> list[tuple[str, str]]:
        """(path, kind) the run must have produced."""
        ...

    def optional(self) -> list[tuple[str, str]]:
        """(path, kind) kept when the run produced them."""
        ...


@dataclass(frozen=True)
class SampleLayout:
    """Paths of one sample's outputs relative to the output directory, as Sarek names them."""

    sample: str

    @property
    def cram(self) -> str:
        return f"preprocessing/markduplicates/{self.sample}/{self.sample}.md.cram"

    @property
    def crai(self) -> str:
        return self.cram + ".crai"

    @property
    def recal_cram(self) -> str:
        return f"preprocessing/recalibrated/{self.sample}/{self.sample}.recal.cram"

    @property
    def vcf(self) -> str:
        return f"variant_calling/bcftools/{self.sample}/{self.sample}.bcftools.vcf.gz"

    @property
    def tbi(self) -> str:
        return self.vcf + ".tbi"

    @property
    def markduplicates_metrics(self) -> str:
        return f"reports/markduplicates/{self.sample}/{self.sample}.md.cram.metrics"

    @property
    def bcftools_stats(self) -> str:
        return f"reports/bcftools/{self.sample}/{self.sample}.bcftools.bcftools_stats.txt"

    reports = "reports"

    def required(self) -> list[tuple[str, str]]:
        return [(self.cram, "cram"), (self.crai, "crai"), (self.vcf, "vcf"), (self.tbi, "tbi")]

    def optional(self) -> list[tuple[str, str]]:
        return [(self.recal_cram, "cram"), (self.recal_cram + ".crai", "crai")]


@dataclass(frozen=True)
class Found:
    relative: str
    kind: str


def find_outputs(outdir: Path, sample: str, layout: OutputLayout | None = None) -> list[Found]:
    """The sample's files under ``outdir`` in ``layout`` (Sarek's unless given): its required
    files (alignments, variants and their indexes), those optional ones that exist, its
    reports and the run's pipeline information."""
    layout = layout or SampleLayout(sample)
    required = layout.required()
    missing = [rel for rel, _ in required if not beneath(outdir, rel).is_file()]
    if missing:
        raise CollectError(f"the run did not produce {', '.join(missing)} under {outdir}")
    found = [Found(rel, kind) for rel, kind in required]
    for rel, kind in layout.optional():
        if beneath(outdir, rel).is_file():
            found.append(Found(rel, kind))
    reports = beneath(outdir, layout.reports) if layout.reports else None
    if reports is not None and reports.is_dir():
        found.extend(
            Found(p.relative_to(outdir).as_posix(), "report")
            for p in sorted(reports.rglob("*"))
            if p.is_file() and sample in p.relative_to(reports).parts
        )
    info = outdir / "pipeline_info"
    if info.is_dir():
        found.extend(
            Found(p.relative_to(outdir).as_posix(), "pipeline_info")
            for p in sorted(info.rglob("*"))
            if p.is_file()
        )
    return found


def collect(
    outdir: Path,
    sample: str,
    archive_prefix: str,
    writer: ArchiveWriter,
    provenance: str,
    layout: OutputLayout | None = None,
) -> list[OutputFile]:
    """Copy the sample's outputs into ``archive_prefix`` (same relative layout), encrypted
    like every archived file (the digests and sizes are the plaintext's), and describe them."""
    outputs = []
    for item in find_outputs(outdir, sample, layout):
        stored = copy_into(
            beneath(outdir, item.relative).resolve().as_uri(), beneath(archive_prefix, item.relative), writer
        )
        outputs.append(
            OutputFile(
                name=item.relative,
                kind=item.kind,
                url=stored.url,
                size=stored.size,
                sha256=stored.sha256,
                provenance=provenance,
            )
        )
    return outputs
