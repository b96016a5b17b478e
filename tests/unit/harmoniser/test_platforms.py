"""One place decides short or long reads from the platform, however the platform is spelled."""

from __future__ import annotations

from pathlib import Path

import pysam
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.harmoniser.inputs import (
    PLATFORM_TECHNOLOGY,
    InputError,
    Lane,
    Technology,
    arrange_lanes,
    platform_key,
    sam_platform,
    sequencing_technology,
)
from services.harmoniser.local import align_command
from services.harmoniser.reference import ReferenceIndex

NAMES = {
    "Illumina": Technology.SHORT_READ,
    "ILLUMINA": Technology.SHORT_READ,
    "MGI": Technology.SHORT_READ,
    "DNBSEQ": Technology.SHORT_READ,
    "Element Biosciences": Technology.SHORT_READ,
    "Ultima": Technology.SHORT_READ,
    "PacBio": Technology.PACBIO,
    "PACBIO": Technology.PACBIO,
    "Pacific Biosciences": Technology.PACBIO,
    "PacBio HiFi": Technology.PACBIO,
    "ONT": Technology.ONT,
    "Oxford Nanopore": Technology.ONT,
    "Oxford Nanopore Technologies": Technology.ONT,
    "nanopore": Technology.ONT,
}


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, Technology]:
    """A known platform with its letters' case changed and separators put between them."""
    name, technology = draw(st.sampled_from(sorted(NAMES.items())))
    out = []
    for char in name:
        out.append(char.upper() if draw(st.booleans()) else char.lower())
        out.append(draw(st.sampled_from(["", "", "", " ", "-", "_"])))
    return draw(st.sampled_from(["", " "])) + "".join(out) + draw(
        st.sampled_from(["", " ", "\t"])
    ), technology


@given(spellings())
def test_a_platform_decides_the_same_however_it_is_spelled(spelled: tuple[str, Technology]) -> None:
    platform, technology = spelled
    assert sequencing_technology(platform) is technology
    assert sequencing_technology(sam_platform(platform)) is technology
    assert sam_platform(sam_platform(platform)) == sam_platform(platform)
    assert technology.long_read == (sam_platform(platform) in ("PACBIO", "ONT"))


@given(st.text(max_size=30))
def test_a_platform_nobody_named_is_refused(platform: str) -> None:
    if platform_key(platform) in PLATFORM_TECHNOLOGY:
        assert sequencing_technology(platform) is PLATFORM_TECHNOLOGY[platform_key(platform)]
    else:
        with pytest.raises(InputError, match="unknown sequencing platform"):
            sequencing_technology(platform)


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
