"""The bad-input corpus: each fault gets its own problem code, and nothing crashes or passes."""

from __future__ import annotations

import gzip
import random
import subprocess
from pathlib import Path

import pytest

from services.validator.checks import check_file
from services.validator.fastq import check_fastq
from shared.synthetic import SYNTHETIC_CONTIGS
from tests.unit.validator import corpus

PROFILE = "synthetic-v1"


def codes(path: Path, name: str | None = None) -> set[str]:
    found = check_file(name or path.name, path.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    return {p.code for p in found.problems if p.severity == "error"}


@pytest.fixture(scope="module")
def reference() -> Path:
    return corpus.synthetic_fasta()


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return corpus.fastq_pair(tmp_path, n=3000)


def test_good_fastq_passes_with_metrics(pair: tuple[Path, Path]) -> None:
    report = check_fastq(pair[0].as_uri())
    assert report.problems == []
    metrics = report.metrics()
    assert metrics["reads"] == 3000
    assert metrics["bases"] == 300_000
    assert metrics["min_length"] == metrics["max_length"] == 100
    assert 0.5 < float(metrics["q30_fraction"] or 0) < 0.95
    assert report.read_number == 1
    assert check_fastq(pair[1].as_uri()).read_number == 2


def test_truncated_gzip(pair: tuple[Path, Path], tmp_path: Path) -> None:
    data = pair[0].read_bytes()
    cut = tmp_path / "cut.fastq.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert "gzip.truncated" in codes(cut)


def test_crc_error(pair: tuple[Path, Path], tmp_path: Path) -> None:
    data = bytearray(pair[0].read_bytes())
    data[-7] ^= 0x5A  # inside the CRC32 of the gzip trailer
    bad = tmp_path / "crc.fastq.gz"
    bad.write_bytes(bytes(data))
    assert "gzip.crc_mismatch" in codes(bad)


def test_trailing_garbage(pair: tuple[Path, Path], tmp_path: Path) -> None:
    bad = tmp_path / "garbage.fastq.gz"
    bad.write_bytes(pair[0].read_bytes() + b"this is not gzip")
    assert "gzip.trailing_garbage" in codes(bad)


def test_multi_member_gzip_is_fine(tmp_path: Path) -> None:
    pairs = corpus.simulate_pairs(100)
    text = corpus.fastq_text(pairs, 1).encode()
    two = tmp_path / "two.fastq.gz"
    two.write_bytes(gzip.compress(text[: len(text) // 2]) + gzip.compress(text[len(text) // 2 :]))
    report = check_fastq(two.as_uri())
    assert report.problems == [] and report.reads == 100


def test_bgzip_fastq_is_recognised(pair: tuple[Path, Path], tmp_path: Path) -> None:
    plain = tmp_path / "x.fastq"
    plain.write_bytes(gzip.decompress(pair[0].read_bytes()))
    subprocess.run(["bgzip", "-f", str(plain)], check=True)
    report = check_fastq((tmp_path / "x.fastq.gz").as_uri())
    assert report.compression == "bgzf" and report.problems == [] and report.reads == 3000


def test_length_mismatch_mid_file(tmp_path: Path) -> None:
    lines = corpus.fastq_text(corpus.simulate_pairs(3000), 1).split("\n")
    lines[4 * 2500 + 3] = lines[4 * 2500 + 3][:-5]
    bad = corpus.write_gz(tmp_path / "len.fastq.gz", "\n".join(lines))
    report = check_fastq(bad.as_uri())
    [found] = [p for p in report.problems if p.code == "fastq.length_mismatch"]
    assert found.location.startswith("record 2501")


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.fastq.gz"
    empty.write_bytes(b"")
    assert codes(empty) == {"file.empty"}


def test_zero_reads(tmp_path: Path) -> None:
    nothing = corpus.write_gz(tmp_path / "zero.fastq.gz", b"")
    assert "fastq.no_reads" in codes(nothing)


def test_not_fastq_text(tmp_path: Path) -> None:
    text = corpus.write_gz(tmp_path / "notes.fastq.gz", "Dear NGC,\nplease find our reads attached.\n")
    assert "file.unrecognised_format" in codes(text)


def test_phred64(tmp_path: Path) -> None:
    pairs = corpus.simulate_pairs(500)
    shifted = [(n, c, p, a, b, "".join(chr(ord(q) + 31) for q in qual)) for n, c, p, a, b, qual in pairs]
    bad = corpus.write_gz(tmp_path / "p64.fastq.gz", corpus.fastq_text(shifted, 1))
    assert "fastq.phred64" in codes(bad)


def test_bad_base_and_header(tmp_path: Path) -> None:
    text = corpus.fastq_text(corpus.simulate_pairs(50), 1)
    lines = text.split("\n")
    lines[4 * 10 + 1] = "X" + lines[4 * 10 + 1][1:]
    bad = corpus.write_gz(tmp_path / "base.fastq.gz", "\n".join(lines))
    assert "fastq.bad_base" in codes(bad)
    lines = text.split("\n")
    lines[4 * 10] = lines[4 * 10][1:]
    worse = corpus.write_gz(tmp_path / "head.fastq.gz", "\n".join(lines))
    assert "fastq.bad_header" in codes(worse)


def test_bam_named_fastq(tmp_path: Path, reference: Path) -> None:
    bam = corpus.write_cram(
        tmp_path / "x.bam", reference, corpus.sam_header(), corpus.aligned_sam(50), fmt="bam"
    )
    misnamed = tmp_path / "reads.fastq.gz"
    bam.rename(misnamed)
    found = check_file(misnamed.name, misnamed.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    assert found.detected_type == "bam"
    assert "file.name_mismatch" in {p.code for p in found.problems}


def test_good_cram(tmp_path: Path, reference: Path) -> None:
    cram = corpus.good_cram(tmp_path, reference)
    found = check_file(cram.name, cram.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    assert found.problems == []
    assert found.metrics["reads"] == 1000
    assert found.metrics["mapped"] == 1000
    assert found.metrics["duplicates"] == 20
    assert found.metrics["cram_version"] == "3.0" or str(found.metrics["cram_version"]).startswith("3.")
    assert found.samples == ["S1"]


def test_grch37_cram(tmp_path: Path, reference: Path) -> None:
    body = "".join(f"r{i}\t4\t*\t0\t0\t*\t*\t0\t0\tACGTACGTAC\tIIIIIIIIII\tRG:Z:S1.L1\n" for i in range(10))
    cram = corpus.write_cram(tmp_path / "b37.cram", reference, corpus.sam_header(contigs=corpus.GRCH37), body)
    assert "reference.grch37" in codes(cram)


def test_truncated_cram(tmp_path: Path, reference: Path) -> None:
    cram = corpus.good_cram(tmp_path, reference)
    data = cram.read_bytes()
    cut = tmp_path / "cut.cram"
    cut.write_bytes(data[: len(data) - 38])
    assert "cram.truncated" in codes(cut)


def test_cram_whose_reference_is_missing(tmp_path: Path) -> None:
    other = tmp_path / "other.fa"
    rng = random.Random(5)
    with other.open("w") as out:
        for name, length in SYNTHETIC_CONTIGS:
            out.write(f">{name}\n{''.join(rng.choices('ACGT', k=length))}\n")
    subprocess.run(["samtools", "faidx", str(other)], check=True)
    seq = other.read_text().split("\n")[1][5000:5100]
    body = f"r1\t0\tchr1\t5001\t60\t100M\t*\t0\t0\t{seq}\t{'I' * 100}\tRG:Z:S1.L1\n"
    cram = corpus.write_cram(tmp_path / "elsewhere.cram", other, corpus.sam_header(), body)
    other.unlink()
    (tmp_path / "other.fa.fai").unlink()
    assert "cram.reference_unavailable" in codes(cram)


def test_grch37_vcf(tmp_path: Path) -> None:
    vcf = corpus.write_vcf(tmp_path, "b37.vcf.gz", corpus.vcf_text(contigs=corpus.GRCH37))
    assert "reference.grch37" in codes(vcf)


def test_vcf_contigs_without_lengths(tmp_path: Path) -> None:
    vcf = corpus.write_vcf(tmp_path, "nolen.vcf.gz", corpus.vcf_text(lengths=False))
    assert "vcf.contig_without_length" in codes(vcf)


def test_good_vcf(tmp_path: Path) -> None:
    vcf = corpus.write_vcf(tmp_path, "S1.vcf.gz", corpus.vcf_text())
    found = check_file(vcf.name, vcf.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    assert found.problems == []
    assert found.metrics["records"] == 3 and found.metrics["fileformat"] == "VCFv4.2"
    index = check_file(
        "S1.vcf.gz.tbi",
        (tmp_path / "S1.vcf.gz.tbi").as_uri(),
        PROFILE,
        reference_fasta=corpus.synthetic_fasta(),
    )
    assert index.detected_type == "tabix_index" and index.problems == []


def test_long_read_ubam(tmp_path: Path) -> None:
    ubam = corpus.long_read_ubam(tmp_path / "hifi.bam")
    found = check_file(ubam.name, ubam.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    assert found.detected_type == "ubam" and found.raw
    assert found.metrics["platform"] == "PacBio"
    assert found.metrics["reads"] == 5 and found.metrics["bases"] == 20000
    assert found.metrics["read_length_n50"] == 10000
    ont = check_file(
        "ont.bam",
        corpus.long_read_ubam(tmp_path / "ont.bam", "ONT").as_uri(),
        PROFILE,
        reference_fasta=corpus.synthetic_fasta(),
    )
    assert ont.metrics["platform"] == "ONT" and ont.problems == []


def test_spring_archive(tmp_path: Path) -> None:
    archive = corpus.spring_archive(tmp_path / "S1.spring", reads=4000)
    found = check_file(archive.name, archive.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    assert found.detected_type == "spring"
    assert found.metrics["reads"] == 4000
    assert [p.code for p in found.problems] == ["spring.decompression_required"]
