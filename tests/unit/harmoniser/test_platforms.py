"""A lane is short or long read by its platform (the uBAM's @RG PL, else the submission's)."""

from __future__ import annotations

from pathlib import Path

import pysam
import pytest

from services.harmoniser.inputs import InputError, Lane, arrange_lanes
from services.harmoniser.local import align_command
from services.harmoniser.reference import ReferenceIndex
from shared.storage import ArchiveWriter


def test_a_lane_is_long_read_by_its_platform_not_by_having_a_bam() -> None:
    assert not Lane("1", bam="/d/S1.bam", platform="ILLUMINA").long_read
    assert Lane("1", fastq_1="/d/L1.fastq.gz", platform="ONT").long_read
    assert Lane("1", bam="/d/L1.bam", platform="PACBIO").minimap2_preset == "map-hifi"
    with pytest.raises(InputError):
        Lane("1", bam="/d/S1.bam", platform="ILLUMINA").minimap2_preset  # noqa: B018


def ubam(path: Path, platform: str) -> Path:
    header = {"HD": {"VN": "1.6", "SO": "unknown"}, "RG": [{"ID": "rg1", "SM": "S", "PL": platform}]}
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        record = pysam.AlignedSegment(out.header)
        record.query_name, record.query_sequence, record.flag = "r1", "ACGT", 4
        record.query_qualities = pysam.qualitystring_to_array("IIII")
        out.write(record)
    return path


def test_the_submissions_platform_reaches_fastq_lanes_and_a_ubam_keeps_its_own(tmp_path: Path) -> None:
    import gzip

    fastq = tmp_path / "L1.fastq.gz"
    with gzip.open(fastq, "wt") as handle:
        handle.write("@read1 runid=x\nACGT\n+\nIIII\n")
    bam = ubam(tmp_path / "S2.bam", "ILLUMINA")
    lanes = arrange_lanes({fastq.name: fastq.as_uri(), bam.name: bam.as_uri()}, "Oxford Nanopore")
    by_file = {(lane.fastq_1 or lane.bam or "").rsplit("/", 1)[-1]: lane for lane in lanes}
    assert by_file["L1.fastq.gz"].platform == "ONT" and by_file["L1.fastq.gz"].long_read
    assert by_file["S2.bam"].platform == "ILLUMINA" and not by_file["S2.bam"].long_read


def test_the_local_backend_maps_a_short_read_ubam_with_bwa_and_long_fastq_with_minimap2(
    tmp_path: Path,
) -> None:
    from services.harmoniser.inputs import SampleReads

    index = ReferenceIndex(tmp_path / "index", "ref.fa")
    short = Lane("1", bam="/d/S2.bam", platform="ILLUMINA")
    long = Lane("2", fastq_1="/d/L1.fastq.gz", platform="ONT")
    reads = SampleReads("P", "S", (short, long))
    short_command = align_command(reads, short, index, 2)
    assert "bwa mem" in short_command and " -p " in short_command and "minimap2" not in short_command
    long_command = align_command(reads, long, index, 2)
    assert long_command.startswith("minimap2 -ax map-ont") and long_command.endswith("/d/L1.fastq.gz")


def test_an_unknown_platform_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown sequencing platform"):
        Lane("1", fastq_1="/d/S_R1.fastq.gz", platform="Sanger-ish").long_read  # noqa: B018


@pytest.mark.parametrize(
    ("platform", "long_read"), [("Oxford Nanopore", True), ("NovaSeq 6000", False), ("PacBio Revio", True)]
)
def test_the_harmoniser_arranges_fastq_lanes_by_the_submissions_platform(
    platform: str, long_read: bool, tmp_path: Path, archive_writer: ArchiveWriter
) -> None:
    import gzip

    from services.harmoniser.harmonise import Harmoniser
    from services.harmoniser.local import LocalBackend
    from shared.events import FileRole, HarmonisationPolicy
    from tests.unit.harmoniser.factory import archive_at, checked, validated

    fastq = tmp_path / "L1.fastq.gz"
    with gzip.open(fastq, "wt") as handle:
        handle.write("@read1\nACGT\n+\nIIII\n")
    event = validated(
        "sub-1",
        "L1",
        [checked(fastq, FileRole.RAW_READS, "fastq", archive=archive_at(tmp_path))],
        next(iter(HarmonisationPolicy)),
        needs_harmonisation=True,
    )
    event = event.model_copy(
        update={"submission": event.submission.model_copy(update={"platform": platform})}
    )
    harmoniser = Harmoniser(
        LocalBackend(tmp_path / "ref.fa", tmp_path, 1, "3.5.1"),
        store_url=tmp_path.as_uri(),
        writer=archive_writer,
        pipeline="p",
        pipeline_version="1",
        reference="r",
        guideline_version="g",
        archive=archive_at(tmp_path),
    )
    [lane] = harmoniser.sample_reads(event, tmp_path / "inputs").lanes
    assert lane.long_read is long_read


def test_a_short_read_ubam_is_harmonised_with_bwa_as_pairs(
    tmp_path: Path, reference: Path, harmoniser_cache: Path
) -> None:
    """An Illumina uBAM (what Picard's FastqToSam makes) is mapped by bwa as pairs, not by minimap2."""
    import asyncio
    import subprocess

    from services.harmoniser.inputs import SampleReads
    from services.harmoniser.layout import SampleLayout
    from services.harmoniser.local import LocalBackend
    from shared.synthetic import simulate_paired_reads

    sim = simulate_paired_reads(reference, tmp_path, prefix="U1", coverage=12, snps=20, seed=5)
    bam = tmp_path / "U1.unaligned.bam"
    subprocess.run(
        [
            *("samtools", "import", "-1", str(sim.fastq_1), "-2", str(sim.fastq_2), "-o", str(bam)),
            *("-r", "ID:HSYNTHDXX.1", "-r", "PL:ILLUMINA", "-r", "SM:U1"),
        ],
        check=True,
    )
    [lane] = arrange_lanes({bam.name: bam.as_uri()}, "ILLUMINA")
    assert (lane.platform, lane.long_read) == ("ILLUMINA", False)
    backend = LocalBackend(reference, harmoniser_cache, threads=2, sarek_version="3.5.1")
    outdir = asyncio.run(
        backend.run(SampleReads("P4", "U1", (lane,)), tmp_path / "run", False, lambda _p: None)
    )
    layout = SampleLayout("U1")
    with pysam.AlignmentFile(str(outdir / layout.cram), "rc", reference_filename=str(reference)) as cram:
        programs = [pg["ID"] for pg in cram.header.to_dict()["PG"]]
        primary = [r for r in cram.fetch(until_eof=True) if not (r.is_secondary or r.is_supplementary)]
    assert "bwa" in programs and "minimap2" not in programs
    assert len(primary) == 2 * sim.pairs
    assert sum(r.is_proper_pair for r in primary) >= 0.95 * len(primary)
    with pysam.VariantFile(str(outdir / layout.vcf)) as vcf:
        calls = {(r.chrom, r.pos, r.alts[0]) for r in vcf if r.alts}
    hom = {(s.contig, s.pos, s.alt) for s in sim.snps if s.genotype == "1/1"}
    assert hom <= calls, hom - calls
