"""Sarek's output layout, and the one collector that reads it for both backends.

The local backend writes exactly the folders Sarek publishes, so the same collector takes a
sample's CRAM, VCF, their indexes, the reports and the pipeline information from either
backend's ``--outdir`` and copies them into the archive, hashing on the way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.events import OutputFile
from shared.paths import beneath
from shared.storage import copy_into


class CollectError(Exception):
    """The run's output directory lacks what the pipeline must produce."""


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


@dataclass(frozen=True)
class Found:
    relative: str
    kind: str


def find_outputs(outdir: Path, sample: str) -> list[Found]:
    """The sample's files under ``outdir``; the CRAM, VCF and their indexes are required."""
    layout = SampleLayout(sample)
    required = [(layout.cram, "cram"), (layout.crai, "crai"), (layout.vcf, "vcf"), (layout.tbi, "tbi")]
    missing = [rel for rel, _ in required if not beneath(outdir, rel).is_file()]
    if missing:
        raise CollectError(f"the run did not produce {', '.join(missing)} under {outdir}")
    found = [Found(rel, kind) for rel, kind in required]
    for rel, kind in ((layout.recal_cram, "cram"), (layout.recal_cram + ".crai", "crai")):
        if beneath(outdir, rel).is_file():
            found.append(Found(rel, kind))
    reports = outdir / "reports"
    if reports.is_dir():
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


def collect(outdir: Path, sample: str, archive_prefix: str, provenance: str) -> list[OutputFile]:
    """Copy the sample's outputs into ``archive_prefix`` (same relative layout) and describe them."""
    outputs = []
    for item in find_outputs(outdir, sample):
        stored = copy_into(
            beneath(outdir, item.relative).resolve().as_uri(), beneath(archive_prefix, item.relative)
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
