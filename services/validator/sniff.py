"""What a file is, read from its first bytes, never from its name.

Uploads are named by people; a BAM called ``.fastq.gz`` must be seen as a BAM. The first
kilobytes decide: gzip/BGZF framing is looked through, then the magic numbers of BAM, CRAM,
the index formats and tar (SPRING archives), then the text of VCF, SAM and FASTQ.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from dataclasses import dataclass

from isal import isal_zlib

FASTQ = "fastq"
BAM = "bam"
UBAM = "ubam"
CRAM = "cram"
VCF = "vcf"
SPRING = "spring"
SAM = "sam"
TABIX = "tabix_index"
CSI = "csi_index"
BAI = "bam_index"
CRAI = "cram_index"
FASTA = "fasta"
EMPTY = "empty"
TEXT = "text"
BINARY = "binary"
TAR = "tar"
CORRUPT_BGZF = "corrupt_bgzf"
"""BGZF framing whose first block does not decompress: what it holds cannot be told."""
UNREADABLE = "unreadable"
"""An archived file that does not decrypt: none of its bytes is taken as data."""

RAW_TYPES = frozenset({FASTQ, UBAM, SPRING})
CLINICAL_TYPES = frozenset({CRAM, BAM, VCF})
INDEX_TYPES = frozenset({TABIX, CSI, BAI, CRAI})


@dataclass(frozen=True)
class Sniffed:
    kind: str
    compression: str  # none, gzip, bgzf
    detail: str = ""


def _is_bgzf(data: bytes) -> bool:
    return len(data) >= 16 and data[:4] == b"\x1f\x8b\x08\x04" and data[12:14] == b"BC"


def _bgzf_framed(data: bytes) -> bool:
    """A gzip member with an extra field of one 6-byte subfield, as BGZF writes it.

    Plain gzip (gzip, isal, Python) never sets FEXTRA; a BGZF block whose subfield id is
    damaged still has the framing, so a BAM with a corrupt first block is told from a
    gzipped FASTQ and never handed to the FASTQ checks.
    """
    return len(data) >= 18 and data[:4] == b"\x1f\x8b\x08\x04" and data[10:12] == b"\x06\x00"


def _fastq_start(data: bytes) -> bool:
    """The first record's header, sequence and ``+`` lines read as FASTQ.

    Stray bytes further on (a NUL in a quality line) are the FASTQ checks' to name, with
    the record they are in; the file is FASTQ all the same.
    """
    lines = data.split(b"\n", 3)
    if len(lines) < 4 or not lines[0].startswith(b"@") or not lines[2].startswith(b"+"):
        return False
    return b"\0" not in b"".join(lines[:3])


def _inflate_start(data: bytes, limit: int = 1 << 16) -> bytes:
    """As much of the decompressed start as the first bytes yield; errors are for later."""
    out = b""
    while data and len(out) < limit:
        d = isal_zlib.decompressobj(31)
        try:
            out += d.decompress(data, limit - len(out))
        except Exception:  # a broken start is for the full checks to name
            break
        if not d.eof:
            break
        data = d.unused_data
        if data[:2] != b"\x1f\x8b":
            break
    return out


def _text_kind(data: bytes) -> str:
    if data.startswith(b"##fileformat=VCF"):
        return VCF
    if data[:4] in (b"@HD\t", b"@SQ\t", b"@RG\t", b"@PG\t", b"@CO\t"):
        return SAM
    if data.startswith(b"@"):
        return FASTQ
    if data.startswith(b">"):
        return FASTA
    return TEXT


def sniff(first: bytes, tar_members: list[str] | None = None) -> Sniffed:
    """The kind of a file from its first bytes (64 KiB is plenty)."""
    if not first:
        return Sniffed(EMPTY, "none")
    if first[:4] == b"CRAM":
        return Sniffed(CRAM, "none", f"{first[4]}.{first[5]}" if len(first) >= 6 else "")
    if first[:4] == b"BAI\x01":
        return Sniffed(BAI, "none")
    if len(first) > 262 and first[257:262] == b"ustar":
        members = tar_members if tar_members is not None else _tar_names(first)
        if any(name.rsplit("/", 1)[-1] == "cp.bin" for name in members):
            return Sniffed(SPRING, "none")
        return Sniffed(TAR, "none")
    if first[:2] == b"\x1f\x8b":
        compression = "bgzf" if _is_bgzf(first) else "gzip"
        inner = _inflate_start(first)
        if inner[:4] == b"BAM\x01":
            return Sniffed(BAM, compression)
        if inner[:4] == b"TBI\x01":
            return Sniffed(TABIX, compression)
        if inner[:4] == b"CSI\x01":
            return Sniffed(CSI, compression)
        kind = _text_kind(inner)
        if kind == TEXT and inner and _looks_like_crai(inner):
            return Sniffed(CRAI, compression)
        if not inner and _bgzf_framed(first):
            return Sniffed(CORRUPT_BGZF, "bgzf", "the first BGZF block does not decompress")
        if not inner:
            # Nothing decompressed: a gzip of nothing, or broken from the start. Raw reads
            # are what arrives gzipped; the FASTQ checks then name the precise fault.
            return Sniffed(FASTQ, compression, "no decompressible data at the start")
        return Sniffed(kind, compression)
    if b"\0" in first[:4096]:
        return Sniffed(FASTQ if _fastq_start(first) else BINARY, "none")
    return Sniffed(_text_kind(first), "none")


def _looks_like_crai(text: bytes) -> bool:
    line = text.split(b"\n", 1)[0]
    fields = line.split(b"\t")
    return len(fields) == 6 and all(f.lstrip(b"-").isdigit() for f in fields)


def _tar_names(first: bytes) -> list[str]:
    """Member names visible in the first bytes of a tar (cp.bin is small and comes early)."""
    names: list[str] = []
    with (
        contextlib.suppress(tarfile.TarError, EOFError, OSError),
        tarfile.open(fileobj=io.BytesIO(first), mode="r|") as tar,
    ):
        for member in tar:
            names.append(member.name)
    return names
