"""Arranging raw files into Sarek's lanes and read groups."""

from __future__ import annotations

from pathlib import Path

import pytest
from isal import igzip

from services.harmoniser.inputs import (
    InputError,
    SampleReads,
    arrange_lanes,
    flowcell_from_read_name,
    read_group,
)


def fastq(path: Path, header: str) -> str:
    with igzip.open(path, "wt") as out:  # type: ignore[no-untyped-call]
        out.write(f"{header}\nACGT\n+\nIIII\n")
    return path.as_uri()


def test_flowcell_follows_sareks_rule() -> None:
    assert flowcell_from_read_name("@A00123:8:HFLOWCELL:2:1101:1000:2000 1:N:0:ACGT\n") == "HFLOWCELL"
    assert flowcell_from_read_name("@HFC:3:1101:10:20\n") == "HFC"
    assert flowcell_from_read_name("@read1\n") == "NA"
    with pytest.raises(InputError):
        flowcell_from_read_name("not a header")


def test_pairs_and_lanes_from_names(tmp_path: Path) -> None:
    files = {
        "S_L001_R1.fastq.gz": fastq(tmp_path / "a1.fq.gz", "@M:1:FC1:1:1101:1:1 1:N:0:A"),
        "S_L001_R2.fastq.gz": fastq(tmp_path / "a2.fq.gz", "@M:1:FC1:1:1101:1:1 2:N:0:A"),
        "S_L002_R1.fastq.gz": fastq(tmp_path / "b1.fq.gz", "@M:1:FC1:2:1101:1:1 1:N:0:A"),
        "S_L002_R2.fastq.gz": fastq(tmp_path / "b2.fq.gz", "@M:1:FC1:2:1101:1:1 2:N:0:A"),
    }
    lanes = arrange_lanes(files)
    assert [(ln.lane, ln.flowcell) for ln in lanes] == [("1", "FC1"), ("2", "FC1")]
    assert lanes[0].fastq_2 == files["S_L001_R2.fastq.gz"]
    group = read_group(SampleReads("P1", "S1", tuple(lanes)), lanes[1], "/ref/genome.fa")
    assert group == "@RG\\tID:FC1.S1.2\\tPU:2\\tSM:P1_S1\\tLB:S1\\tDS:/ref/genome.fa\\tPL:ILLUMINA"


def test_a_lone_read_2_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="read 2 without its read 1"):
        arrange_lanes({"S_R2.fastq.gz": fastq(tmp_path / "x.fq.gz", "@M:1:FC:1:1:1:1 2:N:0:A")})


def test_unknown_files_are_refused() -> None:
    with pytest.raises(InputError, match="neither a gzipped FASTQ"):
        arrange_lanes({"S.sra": "file:///nowhere/S.sra"})
