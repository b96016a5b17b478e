"""Long-read uBAMs through minimap2 with the platform's preset, then the same CRAM and VCF steps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pysam
import pytest

from services.harmoniser.inputs import SampleReads, arrange_lanes
from services.harmoniser.layout import SampleLayout
from services.harmoniser.local import LocalBackend
from shared.synthetic import simulate_long_reads


@pytest.mark.parametrize(
    ("platform", "error_rate", "preset"), [("ONT", 0.01, "map-ont"), ("PACBIO", 0.001, "map-hifi")]
)
def test_long_reads_are_aligned_with_the_platforms_preset(
    platform: str, error_rate: float, preset: str, tmp_path: Path, reference: Path, harmoniser_cache: Path
) -> None:
    sim = simulate_long_reads(
        reference,
        tmp_path / f"L1.{platform.lower()}.bam",
        platform=platform,
        sample="L1",
        coverage=6,
        mean_length=5000,
        error_rate=error_rate,
        snps=20,
        seed=11,
    )
    [lane] = arrange_lanes({sim.ubam.name: sim.ubam.as_uri()})
    assert (lane.platform, lane.minimap2_preset) == (platform, preset)
    backend = LocalBackend(reference, harmoniser_cache, threads=2, sarek_version="3.5.1")
    outdir = asyncio.run(
        backend.run(SampleReads("P9", "L1", (lane,)), tmp_path / "run", False, lambda _p: None)
    )
    layout = SampleLayout("L1")
    with pysam.AlignmentFile(str(outdir / layout.cram), "rc", reference_filename=str(reference)) as cram:
        header = cram.header.to_dict()
        mapped = sum(
            1
            for r in cram.fetch(until_eof=True)
            if not (r.is_unmapped or r.is_secondary or r.is_supplementary)
        )
    assert header["HD"]["SO"] == "coordinate"
    [group] = header["RG"]
    assert (group["PL"], group["SM"], group["LB"]) == (platform, "P9_L1", "L1")
    assert any(pg["ID"] == "minimap2" and f"-ax {preset}" in pg["CL"] for pg in header["PG"])
    assert mapped >= 0.95 * sim.reads
    with pysam.VariantFile(str(outdir / layout.vcf)) as vcf:
        calls = {(r.chrom, r.pos, r.alts[0]) for r in vcf if r.alts}
    hom = {(s.contig, s.pos, s.alt) for s in sim.snps if s.genotype == "1/1"}
    assert hom <= calls, hom - calls
