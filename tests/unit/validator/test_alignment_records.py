"""Every record of a CRAM or BAM decoded in one pass: flagstat's counts, the primary bases,
and a record in the middle that cannot be decoded failing the file."""

from __future__ import annotations

import gzip
import json
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pysam
import pytest

from services.validator import alignments
from services.validator._fastq_scan import count_alignment_parts, count_alignments
from services.validator.alignments import count_records, declared_records
from services.validator.checks import check_file
from shared.synthetic import SYNTHETIC_CONTIGS, contig_sequence
from tests.unit.validator import corpus

PROFILE = "synthetic-v1"
SLICE_RECORDS = 100


@pytest.fixture(scope="module")
def reference() -> Path:
    return corpus.synthetic_fasta()


def sliced(tmp_path: Path, reference: Path, body: str) -> Path:
    """A CRAM of small slices, so that one in the middle can be spoilt alone; indexed."""
    sorted_cram = corpus.write_cram(tmp_path / "sorted.cram", reference, corpus.sam_header(), body)
    cram = tmp_path / "sliced.cram"
    subprocess.run(
        [
            "samtools",
            "view",
            "-C",
            "-T",
            str(reference),
            "--output-fmt-option",
            f"seqs_per_slice={SLICE_RECORDS}",
            "-o",
            str(cram),
            str(sorted_cram),
        ],
        check=True,
    )
    subprocess.run(["samtools", "index", str(cram)], check=True)
    return cram


def mixed_body() -> str:
    """Pairs, plus a secondary, a supplementary, a QC-failed read and unmapped reads."""
    extra = [
        "sec1\t256\tchr1\t2001\t0\t50M\t*\t0\t0\t*\t*\tRG:Z:S1.L1",
        f"sup1\t2048\tchr1\t3001\t60\t40M60H\t*\t0\t0\t{'A' * 40}\t{'I' * 40}\tRG:Z:S1.L1",
        f"qcf1\t512\tchr1\t4001\t60\t100M\t*\t0\t0\t{'C' * 100}\t{'I' * 100}\tRG:Z:S1.L1",
    ]
    extra += [f"un{i}\t4\t*\t0\t0\t*\t*\t0\t0\t{'ACGT' * 30}\t{'I' * 120}\tRG:Z:S1.L1" for i in range(7)]
    return corpus.aligned_sam() + "\n".join(extra) + "\n"


def flagstat(path: Path, reference: Path) -> dict[str, int]:
    out = subprocess.run(
        ["samtools", "flagstat", "-O", "json", "--input-fmt-option", f"reference={reference}", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out)["QC-passed reads"])


@pytest.mark.parametrize("with_bases", [False, True])
def test_counts_are_flagstats_and_bases_those_of_the_primary_reads(
    tmp_path: Path, reference: Path, with_bases: bool
) -> None:
    cram = sliced(tmp_path, reference, mixed_body())
    counts = count_records(cram, reference, with_bases)
    expected = flagstat(cram, reference)
    assert (counts.passed, counts.mapped, counts.duplicates) == (
        expected["total"],
        expected["mapped"],
        expected["duplicates"],
    )
    assert counts.records == expected["total"] + 1  # and the QC-failed read
    # 1000 mapped 100 bp reads, the QC-failed 100, the supplementary's 40 not, 7 unmapped of 120.
    assert counts.primary_bases == ((1000 * 100 + 100 + 7 * 120) if with_bases else 0)


def spoilt_slice(cram: Path, index: int) -> Path:
    """The CRAM with every byte of its ``index``-th slice inverted (found from its .crai)."""
    entries = [
        line.split("\t")
        for line in gzip.decompress(cram.with_name(cram.name + ".crai").read_bytes()).decode().splitlines()
    ]
    container, slice_offset, size = (int(entries[index][i]) for i in (3, 4, 5))
    data = bytearray(cram.read_bytes())
    # The .crai counts a slice's offset from the end of its container's header, so this
    # starts at most a header's length early: still inside the container, spoiling the slice.
    start = container + slice_offset
    for at in range(start, min(start + size, len(data) - 38)):
        data[at] ^= 0xFF
    spoilt = cram.with_name("spoilt.cram")
    spoilt.write_bytes(bytes(data))
    return spoilt


@pytest.mark.parametrize("need_bases", [False, True])
def test_a_cram_with_an_undecodable_slice_in_the_middle_fails(
    tmp_path: Path, reference: Path, need_bases: bool
) -> None:
    cram = sliced(tmp_path, reference, corpus.aligned_sam())
    spoilt = spoilt_slice(cram, 5)
    found = check_file(spoilt.name, spoilt.as_uri(), PROFILE, need_bases, reference)
    [undecodable] = [p for p in found.problems if p.code == "cram.undecodable"]
    # The records before the spoilt slice were read; the failure names where it stopped.
    record = int(undecodable.message.rsplit("record ", 1)[1].split()[0])
    assert SLICE_RECORDS < record <= 6 * SLICE_RECORDS + 1
    assert "reads" not in found.metrics


def test_a_bam_with_a_corrupt_block_in_the_middle_fails(tmp_path: Path, reference: Path) -> None:
    bam = corpus.write_cram(
        tmp_path / "x.bam", reference, corpus.sam_header(), corpus.aligned_sam(), fmt="bam"
    )
    data = bytearray(bam.read_bytes())
    middle = len(data) // 2
    for at in range(middle, middle + 64):
        data[at] ^= 0xFF
    bam.write_bytes(bytes(data))
    found = check_file(bam.name, bam.as_uri(), PROFILE, True, reference)
    assert "bam.undecodable" in {p.code for p in found.problems}


def test_pysams_htslib_counts_as_debians(tmp_path: Path, reference: Path) -> None:
    """Where Debian's libhts is absent the counts come from pysam's copy, and agree."""
    cram = sliced(tmp_path, reference, mixed_body())
    bundled = next(lib for lib in pysam.get_libraries() if "libchtslib" in lib)  # type: ignore[no-untyped-call]
    fields = alignments.BASES_FIELDS
    ours = count_alignments(bundled, str(cram), str(reference), fields, 1)
    assert ours == count_alignments(alignments.htslib_library(), str(cram), str(reference), fields, 2)
    assert ours[0] == 0 and ours[-1] == 1000 * 100 + 100 + 7 * 120


def in_version(cram: Path, reference: Path, version: str) -> Path:
    """The CRAM written again in CRAM ``version``, in slices as small."""
    other = cram.with_name(f"v{version}.cram")
    subprocess.run(
        [
            *("samtools", "view", "-C", "-T", str(reference)),
            *("--output-fmt-option", f"version={version}"),
            *("--output-fmt-option", f"seqs_per_slice={SLICE_RECORDS}"),
            *("-o", str(other), str(cram)),
        ],
        check=True,
    )
    return other


@pytest.mark.parametrize("version", ["2.1", "3.0"])
def test_the_containers_declare_every_record(tmp_path: Path, reference: Path, version: str) -> None:
    cram = sliced(tmp_path, reference, mixed_body())
    other = in_version(cram, reference, version)
    major = int(version[0])
    assert declared_records(other, major) == 1010
    assert count_records(other, reference, True, major).records == 1010


@pytest.mark.parametrize("need_bases", [False, True])
def test_a_container_whose_length_is_damaged_fails_on_every_thread_count(
    tmp_path: Path, reference: Path, need_bases: bool
) -> None:
    """htslib's multi-threaded reader takes a container whose length field is damaged for
    the end of the file, and reports the records before it as all there were; the count
    the container headers declare catches it."""
    cram = sliced(tmp_path, reference, mixed_body())
    index = cram.with_name(cram.name + ".crai").read_bytes()
    fourth = int(gzip.decompress(index).decode().splitlines()[3].split("\t")[3])
    data = bytearray(cram.read_bytes())
    data[fourth] ^= 0x5A
    spoilt = tmp_path / "damaged.cram"
    spoilt.write_bytes(bytes(data))
    fields = alignments.BASES_FIELDS if need_bases else alignments.FLAGSTAT_FIELDS
    threaded = count_alignments(alignments.htslib_library(), str(spoilt), str(reference), fields, 2)
    assert threaded[:2] == (0, 3 * SLICE_RECORDS), "htslib's threads no longer mistake it for the end"
    found = check_file(spoilt.name, spoilt.as_uri(), PROFILE, need_bases, reference)
    assert "cram.undecodable" in {p.code for p in found.problems}
    assert "reads" not in found.metrics


@pytest.fixture
def cut_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut even a test's small CRAM into parts read on threads of their own."""
    monkeypatch.setattr(alignments, "PART_BYTES", 1)


def by_fields(fields: int) -> Callable[[alignments.Container], int]:
    return lambda container: fields


@pytest.mark.parametrize("with_bases", [False, True])
def test_a_cram_read_in_parts_counts_as_one_reader(
    tmp_path: Path, reference: Path, with_bases: bool, cut_small: None
) -> None:
    cram = sliced(tmp_path, reference, mixed_body())
    containers = alignments.cram_containers(cram, 3)
    assert alignments.slices_agree(containers)
    fields = alignments.BASES_FIELDS if with_bases else alignments.FLAGSTAT_FIELDS
    whole = count_alignments(alignments.htslib_library(), str(cram), str(reference), fields, 1)
    assert count_records(cram, reference, with_bases, 3) == alignments.RecordCounts(*whole[1:])
    # However many parts, cut wherever a container starts.
    for parts in (2, 3, 7, sum(1 for c in containers if c.records)):
        cuts = alignments.cram_parts(containers, parts, by_fields(fields))
        assert len(cuts) == parts and sum(p.records for p in cuts) == whole[1] == 1010
        limits = [p.limits(p is cuts[-1]) for p in cuts]
        counted = count_alignment_parts(alignments.htslib_library(), str(cram), str(reference), limits)
        assert [c[:2] for c in counted] == [(0, p.records) for p in cuts]
        assert tuple(sum(c[i] for c in counted) for i in range(1, 6)) == whole[1:]


def test_mapped_reads_bases_come_from_their_cigars_and_the_unplaced_from_their_sequences(
    tmp_path: Path, reference: Path, cut_small: None
) -> None:
    """Single reads, mapped (with clips, an insertion, a deletion), then unplaced unmapped
    reads at the end: the mapped containers are asked for CIGARs, the unplaced for bases,
    and the bases are those a full decoding counts."""
    contig, length = SYNTHETIC_CONTIGS[0]
    sequence = contig_sequence(contig, length)
    body = []
    for i in range(600):
        pos = 100 + i * 37
        cigar, read = [
            ("100M", sequence[pos : pos + 100]),
            ("5S60M3I30M7H", "ACGTA" + sequence[pos : pos + 60] + "TTT" + sequence[pos + 60 : pos + 90]),
            ("40M6D50M", sequence[pos : pos + 40] + sequence[pos + 46 : pos + 96]),
        ][i % 3]
        flag = (16 if i & 1 else 0) | (2048 if i % 11 == 0 else 0) | (512 if i % 13 == 0 else 0)
        body.append(
            f"r{i}\t{flag}\t{contig}\t{pos + 1}\t60\t{cigar}\t*\t0\t0\t{read}\t{'I' * len(read)}\tRG:Z:S1.L1"
        )
    body += [
        f"u{i}\t4\t*\t0\t0\t*\t*\t0\t0\t{'ACGT' * (10 + i)}\t{'I' * (40 + 4 * i)}\tRG:Z:S1.L1"
        for i in range(150)
    ]
    cram = sliced(tmp_path, reference, "\n".join(body) + "\n")
    containers = alignments.cram_containers(cram, 3)
    assert {c.reference_id for c in containers if c.records} >= {0, alignments.UNPLACED}
    whole = count_alignments(
        alignments.htslib_library(), str(cram), str(reference), alignments.BASES_FIELDS, 1
    )
    asked: list[int] = []

    def spied(
        library: str, path: str, ref: str | None, parts: list[tuple[int, int, int]]
    ) -> list[tuple[int, int, int, int, int, int, int]]:
        asked.extend(p[2] for p in parts)
        return count_alignment_parts(library, path, ref, parts)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(alignments, "count_alignment_parts", spied)
        counts = count_records(cram, reference, True, 3)
    assert counts == alignments.RecordCounts(*whole[1:])
    assert counts.primary_bases == sum(
        len(line.split("\t")[9]) for line in body if not int(line.split("\t")[1]) & 2048
    )
    assert alignments.CIGAR_FIELDS in asked and alignments.BASES_FIELDS in asked


def test_placed_unmapped_mates_have_their_bases_decoded(
    tmp_path: Path, reference: Path, cut_small: None
) -> None:
    """Pairs with one mate unmapped, placed beside the other: a CIGAR gives nothing for it, so
    the sequences are decoded (found by the sample, or, missed there, by the pass itself)."""
    contig, length = SYNTHETIC_CONTIGS[0]
    sequence = contig_sequence(contig, length)
    body = []
    for i in range(400):
        pos = 100 + i * 50
        read = f"{sequence[pos : pos + 100]}\t{'I' * 100}\tRG:Z:S1.L1"
        if i % 5:
            body.append(f"s{i}\t0\t{contig}\t{pos + 1}\t60\t100M\t*\t0\t0\t{read}")
            continue
        body.append(f"p{i}\t73\t{contig}\t{pos + 1}\t60\t100M\t=\t{pos + 1}\t0\t{read}")
        mate = "ACGTTGCA" * 9
        body.append(f"p{i}\t133\t{contig}\t{pos + 1}\t0\t*\t=\t{pos + 1}\t0\t{mate}\t{'I' * 72}\tRG:Z:S1.L1")
    cram = sliced(tmp_path, reference, "\n".join(body) + "\n")
    expected = 400 * 100 + 80 * 72
    assert count_records(cram, reference, True, 3).primary_bases == expected
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            alignments, "_unmapped_primaries_sampled", lambda *args: False
        )  # a sample that missed them
        assert count_records(cram, reference, True, 3).primary_bases == expected


def test_a_slice_made_against_other_sequence_than_the_reference_fails(
    tmp_path: Path, reference: Path, cut_small: None
) -> None:
    """Without M5 in @SQ only the slices' MD5s tell that the reference is not the one the
    CRAM was made against; htslib checks them only when it rebuilds the sequences, so where
    the bases come from the CIGARs they are checked here."""
    cram = sliced(tmp_path, reference, corpus.aligned_sam())
    header = subprocess.run(
        ["samtools", "view", "-H", str(cram)], check=True, capture_output=True, text=True
    ).stdout
    bare = tmp_path / "bare.sam"
    bare.write_text(
        "".join(
            line.split("\tM5:")[0] + "\n" if line.startswith("@SQ") else line + "\n"
            for line in header.splitlines()
        )
    )
    unsigned = tmp_path / "unsigned.cram"
    with unsigned.open("wb") as out:
        subprocess.run(["samtools", "reheader", str(bare), str(cram)], check=True, stdout=out)
    other = tmp_path / "other.fa"
    lines = reference.read_text().splitlines()
    second = next(i for i, line in enumerate(lines) if i and line.startswith(">"))
    for i in range(1, second):  # the first contig's every base another
        lines[i] = lines[i].translate(str.maketrans("ACGTacgt", "CGTAcgta"))
    other.write_text("\n".join(lines) + "\n")
    assert count_records(unsigned, reference, True, 3).records == 1000
    with pytest.raises(alignments.UndecodableRecord, match="MD5 differs"):
        count_records(unsigned, other, True, 3)
    found = check_file(unsigned.name, unsigned.as_uri(), PROFILE, True, other)
    assert "cram.undecodable" in {p.code for p in found.problems}


@pytest.mark.parametrize("need_bases", [False, True])
def test_a_cram_read_in_parts_with_an_undecodable_slice_names_its_record(
    tmp_path: Path, reference: Path, need_bases: bool, cut_small: None
) -> None:
    cram = sliced(tmp_path, reference, corpus.aligned_sam())
    spoilt = spoilt_slice(cram, 7)  # in the second of two parts
    found = check_file(spoilt.name, spoilt.as_uri(), PROFILE, need_bases, reference)
    [undecodable] = [p for p in found.problems if p.code == "cram.undecodable"]
    record = int(undecodable.message.rsplit("record ", 1)[1].split()[0])
    assert 6 * SLICE_RECORDS < record <= 8 * SLICE_RECORDS + 1
    assert "reads" not in found.metrics


def test_a_container_declaring_other_records_than_its_slices_is_not_cut_and_fails(
    tmp_path: Path, reference: Path, cut_small: None
) -> None:
    """Parts are cut by the containers' counts; a container whose count is not its slices'
    (its header's CRC32 made right again) would shift every cut after it, so the file is read
    whole, and held to what the containers declare."""
    cram = sliced(tmp_path, reference, corpus.aligned_sam())
    third = alignments.cram_containers(cram, 3)[2]
    data = bytearray(cram.read_bytes())
    header = bytes(data[third.offset : third.offset + 64])
    _, i = alignments._itf8(header, 4)
    _, i = alignments._itf8(header, i)
    _, i = alignments._itf8(header, i)
    assert header[i] == SLICE_RECORDS  # one byte of ITF8
    data[third.offset + i] = SLICE_RECORDS - 1
    *_, end = alignments._container_header(bytes(data[third.offset : third.offset + 64]), 3)
    crc = zlib.crc32(bytes(data[third.offset : third.offset + end]))
    data[third.offset + end : third.offset + end + 4] = crc.to_bytes(4, "little")
    spoilt = tmp_path / "miscounted.cram"
    spoilt.write_bytes(bytes(data))
    containers = alignments.cram_containers(spoilt, 3)
    assert not alignments.slices_agree(containers) and sum(c.records for c in containers) == 1000 - 1
    found = check_file(spoilt.name, spoilt.as_uri(), PROFILE, True, reference)
    [undecodable] = [p for p in found.problems if p.code == "cram.undecodable"]
    assert "1000 records decoded where the containers declare 999" in undecodable.message


@pytest.mark.parametrize("version", ["2.1", "3.0"])
def test_every_cram_version_read_in_parts_counts_as_one_reader(
    tmp_path: Path, reference: Path, version: str, cut_small: None
) -> None:
    cram = sliced(tmp_path, reference, mixed_body())
    other = in_version(cram, reference, version)
    major = int(version[0])
    assert alignments.slices_agree(alignments.cram_containers(other, major))
    whole = count_alignments(
        alignments.htslib_library(), str(other), str(reference), alignments.BASES_FIELDS, 1
    )
    assert count_records(other, reference, True, major) == alignments.RecordCounts(*whole[1:])
