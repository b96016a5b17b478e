"""htsget's slicing rules without a server: BGZF blocks made here, the tabix bins, what a
grant for ranges covers, and an index or file that does not read as its format says."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest

from services.access.grants import covers
from services.access.slices import (
    BGZF_EOF,
    Made,
    Piece,
    ReadAt,
    SliceRefused,
    Stored,
    UnreadableIndex,
    _bins,
    bgzf_blocks,
    cram_slice,
    plaintext,
    size_of,
    vcf_slice,
)
from shared.events import GenomicRange
from tests.unit.validator.corpus import vcf_text, write_vcf


def reader(data: bytes) -> ReadAt:
    return lambda offset, length: data[offset : offset + length]


def test_bgzf_blocks_are_gzip_members_of_at_most_64_kib() -> None:
    data = os.urandom(200_000)  # incompressible: each block as large as it gets
    blocks = bgzf_blocks(data)
    assert gzip.decompress(blocks + BGZF_EOF) == data
    at, sizes = 0, []
    while at < len(blocks):
        assert blocks[at : at + 4] == b"\x1f\x8b\x08\x04" and blocks[at + 12 : at + 14] == b"BC"
        size = struct.unpack_from("<H", blocks, at + 16)[0] + 1
        sizes.append(size)
        at += size
    assert at == len(blocks) and len(sizes) == 4 and max(sizes) <= 1 << 16
    assert bgzf_blocks(b"") == b""


def test_the_bins_of_a_range_are_the_ucsc_schemes() -> None:
    assert _bins(0, 1) == [0, 1, 9, 73, 585, 4681]
    assert _bins(0, 1 << 14) == [0, 1, 9, 73, 585, 4681]
    assert _bins(0, (1 << 14) + 1) == [0, 1, 9, 73, 585, 4681, 4682]
    assert _bins(1 << 26, (1 << 26) + 1) == [0, 2, 17, 137, 1097, 4681 + (1 << 12)]


def test_a_grant_for_ranges_covers_what_lies_inside_one() -> None:
    def at(name: str, start: int | None = None, end: int | None = None) -> GenomicRange:
        return GenomicRange(reference_name=name, start=start, end=end)

    assert covers([], None) and covers([], at("chr1", 5, 10))
    granted = [at("chr1", 100, 200), at("chr2")]
    assert covers(granted, at("chr1", 100, 200)) and covers(granted, at("chr1", 150, 160))
    assert covers(granted, at("chr2")) and covers(granted, at("chr2", 10**6, 2 * 10**6))
    for outside in (at("chr1", 99, 150), at("chr1", 150, 201), at("chr1", 150), at("chr1"), at("chr3")):
        assert not covers(granted, outside), outside
    assert not covers(granted, None)  # the whole file is more than its ranges


def test_plaintext_streams_the_pieces_and_refuses_a_file_shorter_than_its_index(tmp_path: Path) -> None:
    data = bytes(range(256)) * 100
    pieces: list[Piece] = [Stored(10, 3000), Made(b"made"), Stored(0, 5)]
    assert size_of(pieces) == 3009
    assert b"".join(plaintext(pieces, reader(data), step=1000)) == data[10:3010] + b"made" + data[:5]
    with pytest.raises(UnreadableIndex, match="ends before"):
        list(plaintext([Stored(len(data) - 10, 20)], reader(data)))


@pytest.fixture
def vcf(tmp_path: Path) -> tuple[bytes, bytes]:
    target = write_vcf(tmp_path, "S1.vcf.gz", vcf_text())
    return target.read_bytes(), Path(f"{target}.tbi").read_bytes()


def test_a_vcf_range_past_its_reference_or_of_no_reference_is_refused(vcf: tuple[bytes, bytes]) -> None:
    data, index = vcf
    for locus, code in (
        (GenomicRange(reference_name="chr1", start=600_000), "InvalidRange"),
        (GenomicRange(reference_name="chrX"), "NotFound"),
        (GenomicRange(reference_name="*"), "InvalidInput"),
    ):
        with pytest.raises(SliceRefused) as refused:
            vcf_slice(index, reader(data), len(data), locus)
        assert refused.value.code == code
    pieces = vcf_slice(index, reader(data), len(data), GenomicRange(reference_name="chr1", start=0, end=5000))
    records = gzip.decompress(b"".join(plaintext(pieces, reader(data)))).decode().splitlines()
    assert [r.split("\t")[1] for r in records if not r.startswith("#")] == ["1000", "2000", "3000"]


def test_an_index_or_file_that_does_not_read_is_the_archives_fault(vcf: tuple[bytes, bytes]) -> None:
    data, index = vcf
    locus = GenomicRange(reference_name="chr1")
    bad_magic = gzip.compress(b"XXX\x01" + gzip.decompress(index)[4:])
    for broken_index in (b"not gzip", bad_magic, gzip.compress(gzip.decompress(index)[:40])):
        with pytest.raises(UnreadableIndex):
            vcf_slice(broken_index, reader(data), len(data), locus)
    with pytest.raises(UnreadableIndex, match="no BGZF block"):
        vcf_slice(index, reader(b"\0" * len(data)), len(data), locus)
    block = bytearray(data)
    block[30] ^= 0xFF  # inside the first block's deflate stream
    with pytest.raises(UnreadableIndex):
        vcf_slice(index, reader(bytes(block)), len(block), locus)
    for broken_crai in (b"", gzip.compress(b"0\t1\tx\n"), gzip.compress(b"")):
        with pytest.raises(UnreadableIndex):
            cram_slice(broken_crai, reader(data), len(data), locus)
    crai = gzip.compress(b"0\t1\t100\t30\t0\t10\n")
    with pytest.raises(UnreadableIndex, match="not a CRAM 3"):
        cram_slice(crai, reader(data), len(data), locus)  # a VCF is no CRAM
    for container in (0, len(data), len(data) + 10**9, 1 << 40):  # an index that lies about the file
        lying = gzip.compress(f"0\t1\t100\t{container}\t0\t10\n".encode())
        with pytest.raises(UnreadableIndex, match="outside the file"):
            cram_slice(lying, reader(data), len(data), locus)
    far = gzip.compress(f"0\t1\t100\t{100 << 20}\t0\t10\n".encode())  # a header of 100 MB is not read
    with pytest.raises(UnreadableIndex, match="first container past"):
        cram_slice(far, reader(data), 1 << 30, locus)
