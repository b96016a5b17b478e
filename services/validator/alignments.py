"""CRAM and BAM checks, and long-read unaligned BAM (uBAM).

The header is read with pysam; the records are decoded by htslib from C
(:func:`count_records`), which counts mapped, unmapped and duplicate reads as ``samtools
flagstat`` does and, when no raw reads came, the primary reads' bases, far faster than a
Python loop and without a second pass. A CRAM is cut at container boundaries into parts
decoded side by side, each asked only for what its checks need: a mapped read's bases come
from its CIGAR, an unmapped one's from its sequence. A truncated CRAM opens without
complaint, so its end-of-file container is checked byte for byte; a BAM's BGZF end-of-file
block likewise. Long-read uBAMs hold few, long records, so they are walked in Python to get
the read-length N50."""

from __future__ import annotations

import ctypes.util
import hashlib
import os
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import pysam

from services.validator._fastq_scan import count_alignment_parts, count_alignments
from services.validator.htslib_messages import as_problems, captured
from services.validator.problems import problem
from services.validator.references import Contig, Identification, Profile, contig_md5s, identify
from shared.events import Problem

CRAM3_EOF = bytes.fromhex("0f000000ffffffff0fe0454f4600000000010005bdd94f0001000606010001000100ee63014b")
CRAM21_EOF = bytes.fromhex("0b000000ffffffff0fe0454f460000000001000001000606010001000100")
"""htslib's CRAM 2.1 end-of-file container (cram_io.c), byte for byte."""
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
DUPLICATE_MARKERS = ("markduplicates", "markdup", "samblaster", "bammarkduplicates", "dedup", "umi")
"""@PG program names that mark duplicates (Picard/GATK, samtools, sambamba, biobambam, ...)."""


def local_refs_only() -> None:
    """Keep htslib from fetching reference sequences over the network (EBI's CRAM registry).

    Genome data never leaves NGC, and neither should a lookup by its checksums; a CRAM
    whose reference is not here is reported as such.
    """
    os.environ.setdefault("REF_PATH", "/nonexistent/genomhub-no-remote-references/%s")


@dataclass
class AlignmentReport:
    kind: str
    metrics: dict[str, int | float | str | bool | None] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    reference: Identification | None = None
    sort_order: str = ""
    cram_version: str = ""
    has_read_group: bool = False
    duplicates_marked: bool = False
    programs: list[str] = field(default_factory=list)
    raw_bases: int = 0
    raw_reads: int = 0
    long_read_platform: str = ""


def _header(path: Path, reference: Path | None) -> dict[str, Any]:
    with pysam.AlignmentFile(
        str(path), "r", check_sq=False, reference_filename=str(reference) if reference else None
    ) as af:
        return dict(af.header.to_dict())


def check_header(header: dict[str, Any], report: AlignmentReport, expected: Profile) -> None:
    """@HD SO, @RG with SM and PL, the @PG chain, and the reference of @SQ."""
    hd = header.get("HD", {})
    report.sort_order = str(hd.get("SO", ""))
    if not report.sort_order:
        report.problems.append(problem("header.no_sort_order", "@HD has no SO (sort order) field", "@HD"))
    groups = header.get("RG", [])
    report.has_read_group = bool(groups)
    if not groups:
        report.problems.append(
            problem("header.no_read_group", "no @RG line: sample and platform unknown", "@RG")
        )
    for rg in groups:
        missing = [tag for tag in ("SM", "PL") if not rg.get(tag)]
        if missing:
            report.problems.append(
                problem(
                    "header.read_group_incomplete",
                    f"@RG lacks {', '.join(missing)}",
                    f"@RG ID:{rg.get('ID', '?')}",
                )
            )
        if rg.get("SM") and rg["SM"] not in report.samples:
            report.samples.append(str(rg["SM"]))
    programs = header.get("PG", [])
    ids = {str(pg.get("ID")) for pg in programs}
    for pg in programs:
        parent = pg.get("PP")
        if parent is not None and str(parent) not in ids:
            report.problems.append(
                problem(
                    "header.broken_pg_chain", f"@PG PP:{parent} names no @PG ID", f"@PG ID:{pg.get('ID')}"
                )
            )
        report.programs.append(" ".join(str(pg.get(k, "")) for k in ("ID", "PN", "VN", "CL")).strip())
    report.duplicates_marked = any(
        marker in str(pg.get(k, "")).lower()
        for pg in programs
        for k in ("ID", "PN", "CL")
        for marker in DUPLICATE_MARKERS
    )
    contigs = [Contig(str(sq["SN"]), int(sq.get("LN", 0)), sq.get("M5")) for sq in header.get("SQ", [])]
    report.reference = identify(contigs, expected)
    _reference_problems(report.reference, expected, report.problems, "@SQ")


def _reference_problems(
    ident: Identification, expected: Profile, problems: list[Problem], where: str
) -> None:
    if ident.matches_profile:
        return
    if ident.build in ("GRCh37", "hg19", "GRCh37 (hg19 names)"):
        problems.append(
            problem("reference.grch37", f"made against {ident.build}; NGC requires {expected.name}", where)
        )
    elif ident.build == expected.name and ident.md5_mismatched:
        problems.append(
            problem(
                "reference.md5_mismatch",
                f"{expected.name} contig lengths but other sequence: M5 differs for "
                f"{', '.join(ident.md5_mismatched[:5])}",
                where,
            )
        )
    elif ident.build is not None:
        problems.append(
            problem("reference.wrong_build", f"made against {ident.build}, not {expected.name}", where)
        )
    else:
        problems.append(
            problem("reference.unknown", f"contigs match no known build; NGC requires {expected.name}", where)
        )


def check_eof(path: Path, kind: str, report: AlignmentReport) -> bool:
    size = path.stat().st_size
    with path.open("rb") as handle:
        start = handle.read(6)
        handle.seek(max(0, size - 38))
        end = handle.read(38)
    if kind == "cram":
        major, minor = start[4], start[5]
        report.cram_version = f"{major}.{minor}"
        marker = CRAM3_EOF if major >= 3 else CRAM21_EOF
        if not end.endswith(marker):
            report.problems.append(
                problem(
                    "cram.truncated", "no CRAM end-of-file container: the file is cut short", f"byte {size}"
                )
            )
            return False
        return True
    if not end.endswith(BGZF_EOF):
        report.problems.append(
            problem("bam.truncated", "no BGZF end-of-file block: the file is cut short", f"byte {size}")
        )
        return False
    return True


SAM_FLAG, SAM_RNAME, SAM_MAPQ, SAM_CIGAR, SAM_RNEXT, SAM_SEQ = 0x2, 0x4, 0x10, 0x20, 0x40, 0x200
"""htslib's ``sam_fields``: what a CRAM decoder must reconstruct of each record."""
FLAGSTAT_FIELDS = SAM_FLAG | SAM_RNAME | SAM_MAPQ | SAM_RNEXT
"""What ``samtools flagstat`` asks of a CRAM (bam_stat.c), and all the counts need."""
BASES_FIELDS = FLAGSTAT_FIELDS | SAM_SEQ
"""With the bases: a read's length is its decoded sequence's. Without SEQ htslib leaves it
0, and a CIGAR has none for unmapped reads, so counting from the CIGAR would miss theirs."""
CIGAR_FIELDS = FLAGSTAT_FIELDS | SAM_CIGAR
"""A mapped read's bases from its CIGAR (what it consumes of the read), at about the cost of
the flags: rebuilding and packing every sequence from the reference costs three quarters as
much again. Only for containers of mapped reads, and held to there being no unmapped
primary read among them; their reference is then checked slice by slice here, as htslib
does only when it rebuilds the sequences."""


@dataclass(frozen=True)
class RecordCounts:
    """What one decoding pass over every record found, counted as ``samtools flagstat``
    counts QC-passed reads."""

    records: int
    passed: int
    mapped: int
    duplicates: int
    primary_bases: int


class UndecodableRecord(Exception):
    """htslib stopped before the end of the records: the file cannot be read whole."""


@lru_cache(maxsize=1)
def htslib_library() -> str:
    """The htslib to decode with: Debian's, beside the samtools the project depends on (its
    CRAM codecs are built with the platform's libdeflate and SIMD), else pysam's copy."""
    found = ctypes.util.find_library("hts")
    if found:
        return found
    bundled: list[str] = pysam.get_libraries()  # type: ignore[no-untyped-call]
    return next(lib for lib in bundled if "libchtslib" in lib)


def decoding_threads() -> int:
    """htslib decodes CRAM slices on this many threads, the reader counting on its own."""
    return min(2, os.cpu_count() or 1)


FILE_DEFINITION = 26
"""A CRAM's ``CRAM``, version and file id, before its first container."""


def _itf8(data: bytes, at: int) -> tuple[int, int]:
    """CRAM's ITF8 integer at ``at``: its value (signed 32-bit) and where the next begins."""
    first = data[at]
    if first < 0x80:
        value, size = first, 1
    elif first < 0xC0:
        value, size = (first & 0x3F) << 8 | data[at + 1], 2
    elif first < 0xE0:
        value, size = (first & 0x1F) << 16 | data[at + 1] << 8 | data[at + 2], 3
    elif first < 0xF0:
        value, size = (first & 0x0F) << 24 | int.from_bytes(data[at + 1 : at + 4]), 4
    else:
        value = (first & 0x0F) << 28 | int.from_bytes(data[at + 1 : at + 4]) << 4 | data[at + 4] & 0x0F
        size = 5
    return value - (1 << 32) if value >= 1 << 31 else value, at + size


def _ltf8(data: bytes, at: int) -> tuple[int, int]:
    """CRAM's LTF8 integer at ``at``: as many more bytes as its first has leading ones."""
    first = data[at]
    extra = 8 - (first ^ 0xFF).bit_length() if first != 0xFF else 8
    value = first & (0xFF >> (extra + 1)) if extra < 8 else 0
    for byte in data[at + 1 : at + 1 + extra]:
        value = value << 8 | byte
    return value, at + 1 + extra


@dataclass(frozen=True)
class Slice:
    """What a slice header declares: its reference span, records and reference MD5."""

    offset: int
    reference_id: int
    start: int
    span: int
    records: int
    embedded_reference: int
    md5: bytes


@dataclass(frozen=True)
class Container:
    """Where a CRAM container starts, what it declares, and its slices' headers (None where
    one cannot be read)."""

    offset: int
    size: int
    reference_id: int
    records: int
    slices: tuple[Slice, ...] | None


UNPLACED = -1
"""The reference id of a container of unplaced unmapped reads (the end of a sorted CRAM)."""
SLICE_HEADER = 2
"""The content type of a CRAM slice header block."""
SLICE_HEADER_BYTES = 256
"""Enough for a slice header block with its content ids and MD5 (a few dozen ids at most)."""


def _slice_header(data: bytes, offset: int, major: int) -> Slice | None:
    """The slice header block at the start of ``data`` (at byte ``offset``); None if it is no
    slice header, or a compressed one (the format allows it, htslib never writes it)."""
    method, content_type = data[0], data[1]
    if method != 0 or content_type != SLICE_HEADER:
        return None
    _, i = _itf8(data, 2)  # content id
    _, i = _itf8(data, i)  # compressed size
    _, i = _itf8(data, i)  # raw size
    reference_id, i = _itf8(data, i)
    start, i = _itf8(data, i)
    span, i = _itf8(data, i)
    records, i = _itf8(data, i)
    _, i = _ltf8(data, i) if major >= 3 else _itf8(data, i)  # record counter
    _, i = _itf8(data, i)  # blocks
    ids, i = _itf8(data, i)
    for _ in range(max(ids, 0)):
        _, i = _itf8(data, i)
    embedded, i = _itf8(data, i)
    md5 = data[i : i + 16]
    if len(md5) < 16:
        raise IndexError("the slice header is cut short")
    return Slice(offset, reference_id, start, span, records, embedded, md5)


def _container_header(data: bytes, major: int) -> tuple[int, int, list[int], int]:
    """The container header at the start of ``data``: its reference id, the records it
    declares, its slices' landmarks, and where it ends (for CRAM 3, where its CRC32 is)."""
    reference_id, i = _itf8(data, 4)
    _, i = _itf8(data, i)  # start
    _, i = _itf8(data, i)  # span
    records, i = _itf8(data, i)
    _, i = _ltf8(data, i) if major >= 3 else _itf8(data, i)  # record counter
    _, i = _ltf8(data, i)  # bases
    _, i = _itf8(data, i)  # blocks
    count, i = _itf8(data, i)
    if count < 0:
        raise IndexError("a negative count of landmarks")
    landmarks = []
    for _ in range(count):
        landmark, i = _itf8(data, i)
        landmarks.append(landmark)
    return reference_id, records, landmarks, i


def cram_containers(path: Path, major: int) -> list[Container]:
    """A CRAM's containers, walked from header to header (a few thousand in a genome)
    without decoding, with what each and its slices declare.

    htslib's multi-threaded reader can end a pass at a damaged container as if at the end
    of the file, and the containers' counts are what the pass is held to; each CRAM 3
    container header's CRC32 is checked on the way."""
    containers: list[Container] = []
    size = path.stat().st_size
    with path.open("rb") as handle:
        at = FILE_DEFINITION
        while at < size:
            handle.seek(at)
            data = handle.read(4096)
            if len(data) < 4:
                raise UndecodableRecord(f"the container at byte {at} is cut short")
            length = int.from_bytes(data[:4], "little", signed=True)
            try:
                reference_id, records, landmarks, i = _container_header(data, major)
                if major >= 3:
                    if zlib.crc32(data[:i]) != int.from_bytes(data[i : i + 4], "little"):
                        raise UndecodableRecord(f"the container header at byte {at} fails its CRC32")
                    i += 4
            except IndexError:
                raise UndecodableRecord(f"the container header at byte {at} is cut short") from None
            if length < 0 or records < 0 or at + i + length > size:
                raise UndecodableRecord(f"the container header at byte {at} is damaged")
            slices = _slices(handle, data, at, i, length, landmarks, major) if records else ()
            containers.append(Container(at, i + length, reference_id, records, slices))
            at += i + length
    return containers


def _slices(
    handle: BinaryIO, data: bytes, at: int, header: int, length: int, landmarks: list[int], major: int
) -> tuple[Slice, ...] | None:
    """The slice headers of the container at byte ``at`` (``data`` read from there, its blocks
    from ``header`` on); None where one cannot be read."""
    found = []
    for landmark in landmarks:
        if not 0 <= landmark < length:
            return None
        start = header + landmark
        block = data[start : start + SLICE_HEADER_BYTES]
        if len(block) < SLICE_HEADER_BYTES:  # beyond what was read with the container header
            handle.seek(at + start)
            block = handle.read(SLICE_HEADER_BYTES)
        try:
            piece = _slice_header(block, at + start, major)
        except IndexError:
            return None
        if piece is None:
            return None
        found.append(piece)
    return tuple(found)


def declared_records(path: Path, major: int) -> int:
    """The records a CRAM's container headers say it holds (see :func:`cram_containers`)."""
    return sum(c.records for c in cram_containers(path, major))


def slices_agree(containers: list[Container]) -> bool:
    """Whether every slice header was read and each container's slices declare together
    what it does. The slices' counts are what htslib decodes by, so then a part of the file
    cut at a container boundary holds exactly the records its containers declare."""
    return all(
        c.slices is not None and sum(s.records for s in c.slices) == c.records
        for c in containers
        if c.records
    )


PART_BYTES = 64 << 20
"""A CRAM is read in parts on threads of their own only where each has this much to read:
below it a reader's start-up (its reference, its first container) outweighs the sharing."""


@dataclass(frozen=True)
class Part:
    """Consecutive containers one reader decodes, and what it asks htslib for."""

    containers: tuple[Container, ...]
    fields: int
    first: bool

    @property
    def records(self) -> int:
        return sum(c.records for c in self.containers)

    def limits(self, last: bool) -> tuple[int, int, int]:
        """For the reader: where it starts (0: where htslib starts reading), how many
        records it reads (the last part: to the end of the file, so that a record beyond
        what the containers declare is not left unread), and its fields."""
        return (0 if self.first else self.containers[0].offset, -1 if last else self.records, self.fields)


def cram_parts(containers: list[Container], parts: int, fields: Callable[[Container], int]) -> list[Part]:
    """The containers cut at container boundaries into runs of about equal bytes, at most
    ``parts`` of them and none below :data:`PART_BYTES`, and wherever ``fields`` changes."""
    total = sum(c.size for c in containers)
    parts = max(1, min(parts, total // PART_BYTES))
    cuts: list[Part] = []
    run: list[Container] = []
    taken = split = 0
    for container in containers:
        wanted = fields(container) if container.records else None
        if run and any(c.records for c in run):
            due = split < parts - 1 and taken >= total * (split + 1) // parts
            if due or (wanted is not None and wanted != _run_fields(run, fields)):
                split += due
                cuts.append(Part(tuple(run), _run_fields(run, fields), not cuts))
                run = []
        run.append(container)
        taken += container.size
    cuts.append(Part(tuple(run), _run_fields(run, fields), not cuts))
    return cuts


def _run_fields(run: list[Container], fields: Callable[[Container], int]) -> int:
    return next((fields(c) for c in run if c.records), FLAGSTAT_FIELDS)


SAMPLED_CONTAINERS = 8


def _unmapped_primaries_sampled(path: Path, where: str | None, mapped: list[Container]) -> bool:
    """Whether a few containers of mapped reads, spread over the file, hold an unmapped
    primary read (the mate of a mapped one, placed beside it): then most do, and the CIGARs
    cannot give the bases, so the sequences are decoded from the start."""
    if not mapped:
        return False
    step = max(1, len(mapped) // SAMPLED_CONTAINERS)
    sample = [(c.offset, c.records, SAM_FLAG) for c in mapped[step // 2 :: step][:SAMPLED_CONTAINERS]]
    return any(part[6] for part in count_alignment_parts(htslib_library(), str(path), where, sample))


def count_records(path: Path, reference: Path | None, with_bases: bool, cram_major: int = 0) -> RecordCounts:
    """Every record decoded by htslib, in one pass: flagstat's counts, and with
    ``with_bases`` the bases of the primary reads (neither secondary nor supplementary).
    A CRAM's records are held to those its containers declare, and decoded on two threads:
    by readers of their own, each taking a part of the file cut at a container boundary, or
    where the file cannot be cut so (too small; slice headers that cannot be read or that
    disagree with their container's) by htslib's decoding threads. A record htslib cannot
    decode ends the pass with :class:`UndecodableRecord`."""
    where = str(reference) if reference else None
    if cram_major not in (2, 3):
        fields = BASES_FIELDS if with_bases else FLAGSTAT_FIELDS
        status, records, passed, mapped, duplicates, bases = count_alignments(
            htslib_library(), str(path), where, fields, 1
        )
        _raise_for(status, records, None)
        return RecordCounts(records, passed, mapped, duplicates, bases if with_bases else 0)
    containers = cram_containers(path, cram_major)
    declared = sum(c.records for c in containers)
    if not slices_agree(containers):
        return _count_whole(path, where, with_bases, declared)
    mapped_reads = [c for c in containers if c.records and c.reference_id != UNPLACED]
    by_cigar = (
        with_bases and reference is not None and not _unmapped_primaries_sampled(path, where, mapped_reads)
    )

    def asked(container: Container) -> int:
        if not with_bases:
            return FLAGSTAT_FIELDS
        return CIGAR_FIELDS if by_cigar and container.reference_id != UNPLACED else BASES_FIELDS

    parts = cram_parts(containers, decoding_threads(), asked)
    if len(parts) == 1 and not by_cigar:
        return _count_whole(path, where, with_bases, declared)
    counted = count_alignment_parts(
        htslib_library(), str(path), where, [p.limits(p is parts[-1]) for p in parts]
    )
    missing = [
        i
        for i, (part, c) in enumerate(zip(parts, counted, strict=True))
        if part.fields == CIGAR_FIELDS and c[6]
    ]
    if missing:
        # Unmapped primary reads where the sample saw none: their bases need the sequences.
        again = [parts[i] for i in missing]
        redone = count_alignment_parts(
            htslib_library(),
            str(path),
            where,
            [(*p.limits(p is parts[-1])[:2], BASES_FIELDS) for p in again],
        )
        for i, counts in zip(missing, redone, strict=True):
            counted[i] = counts
            parts[i] = Part(parts[i].containers, BASES_FIELDS, parts[i].first)
    before = 0
    for status, records, *_ in counted:
        if status:
            _raise_for(status, before + records, declared)
        before += records
    _raise_for(0 if before == declared else 3, before, declared)
    if reference is not None:
        _check_slice_references(path, reference, [p for p in parts if p.fields == CIGAR_FIELDS])
    passed, mapped, duplicates, bases = (sum(c[i] for c in counted) for i in range(2, 6))
    return RecordCounts(before, passed, mapped, duplicates, bases if with_bases else 0)


def _count_whole(path: Path, where: str | None, with_bases: bool, declared: int) -> RecordCounts:
    """The file read whole by one reader, slices decoded on htslib's threads."""
    fields = BASES_FIELDS if with_bases else FLAGSTAT_FIELDS
    status, records, passed, mapped, duplicates, bases = count_alignments(
        htslib_library(), str(path), where, fields, decoding_threads()
    )
    if status == 0 and records != declared:
        status = 3
    if status == 3:
        # Decoding threads read ahead, and a fault they meet can end the pass before the
        # records ahead of it are handed over: one thread finds which record it is.
        status, records, *_ = count_alignments(htslib_library(), str(path), where, fields, 1)
        status = status or 3
    _raise_for(status, records, declared)
    return RecordCounts(records, passed, mapped, duplicates, bases if with_bases else 0)


def _check_slice_references(path: Path, reference: Path, parts: list[Part]) -> None:
    """Each slice of these parts held to the reference, as htslib holds a slice whose
    sequences it rebuilds: the MD5 of the reference span the slice covers (upper case, cut
    at the contig's end) is the one its header records."""
    if not parts:
        return
    names = [str(sq["SN"]) for sq in _header(path, reference).get("SQ", [])]
    with pysam.FastaFile(str(reference)) as fasta:
        lengths = dict(zip(fasta.references, fasta.lengths, strict=True))
        for part in parts:
            for container in part.containers:
                for piece in container.slices or ():
                    if piece.reference_id < 0 or piece.embedded_reference >= 0 or not any(piece.md5):
                        continue
                    name = names[piece.reference_id] if piece.reference_id < len(names) else "?"
                    if name not in lengths:
                        raise UndecodableRecord(
                            f"the slice at byte {piece.offset} is on {name}, not in the reference"
                        )
                    end = min(piece.start + piece.span - 1, lengths[name])
                    bases = fasta.fetch(name, piece.start - 1, end).upper().encode()
                    if hashlib.md5(bases).digest() != piece.md5:
                        raise UndecodableRecord(
                            f"the slice at byte {piece.offset} was made against another sequence "
                            f"than the reference's {name}:{piece.start}-{end} (its MD5 differs)"
                        )


def _raise_for(status: int, records: int, declared: int | None) -> None:
    """:class:`UndecodableRecord` for what a pass ended with (0: read whole)."""
    if status == 1:
        raise UndecodableRecord("htslib cannot open the file")
    if status == 2:
        raise UndecodableRecord("htslib cannot read the header")
    if status == 4:
        raise UndecodableRecord(f"htslib cannot start reading at the container of record {records + 1}")
    if status == 3:
        if declared is not None and records >= declared:
            raise UndecodableRecord(f"{records} records decoded where the containers declare {declared}")
        raise UndecodableRecord(f"record {records + 1} cannot be decoded")


def check_alignment(
    path: Path, kind: str, expected: Profile, reference: Path | None, need_bases: bool = False
) -> AlignmentReport:
    """A CRAM or BAM: header, reference, end of file, and every record decoded; what htslib
    said while reading it is part of the report."""
    with captured() as said:
        report = _check_alignment(path, kind, expected, reference, need_bases)
    report.problems += as_problems(said, report.kind)
    return report


def _check_alignment(
    path: Path, kind: str, expected: Profile, reference: Path | None, need_bases: bool
) -> AlignmentReport:
    local_refs_only()
    report = AlignmentReport(kind)
    try:
        header = _header(path, reference)
    except (OSError, ValueError) as exc:
        report.problems.append(problem(f"{kind}.unreadable", f"htslib cannot read the header: {exc}"))
        return report
    if not header.get("SQ"):
        if kind == "bam":
            return check_unaligned_bam(path, header, report)
        # Long reads arrive as uBAM; a CRAM is an alignment, and one without @SQ aligns to
        # nothing, so it is neither clinical output nor raw reads NGC takes.
        report.problems.append(
            problem(
                "cram.no_reference_sequences",
                "the header declares no reference sequences (@SQ): a CRAM without them is not an "
                "alignment, and unaligned reads come as FASTQ, uBAM or SPRING",
                "@SQ",
            )
        )
        check_eof(path, kind, report)
        return report
    check_header(header, report, expected)
    whole = check_eof(path, kind, report)
    if kind == "cram" and report.reference is not None and reference is not None:
        missing = _unavailable_sequences(header, reference)
        if missing:
            report.problems.append(
                problem(
                    "cram.reference_unavailable",
                    f"the reference sequences this CRAM was made against are not available here "
                    f"(M5 of {', '.join(missing[:5])}); it cannot be decoded",
                    "@SQ",
                )
            )
            return report
    if not whole:
        return report
    try:
        major = int(report.cram_version.split(".")[0]) if report.cram_version else 0
        counts = count_records(path, reference, need_bases, major)
    except UndecodableRecord as exc:
        code = "cram.undecodable" if kind == "cram" else "bam.undecodable"
        report.problems.append(problem(code, f"htslib could not decode every record: {exc}"))
        return report
    total = counts.passed
    report.metrics.update(
        {
            "reads": total,
            "mapped": counts.mapped,
            "unmapped": total - counts.mapped,
            "duplicates": counts.duplicates,
            "sort_order": report.sort_order,
            "reference": report.reference.flavour if report.reference else "",
        }
    )
    if report.cram_version:
        report.metrics["cram_version"] = report.cram_version
    if counts.duplicates > 0:
        report.duplicates_marked = True
    if total == 0:
        report.problems.append(problem(f"{kind}.no_reads", "the file holds no reads"))
    if need_bases:
        report.metrics["bases"] = counts.primary_bases
    return report


def _unavailable_sequences(header: dict[str, Any], reference: Path) -> list[str]:
    """@SQ contigs whose M5 the configured reference FASTA does not hold."""
    available = {md5 for _, md5 in reference_md5s(reference).values()}
    return [
        str(sq["SN"])
        for sq in header.get("SQ", [])
        if sq.get("M5") and str(sq["M5"]).lower() not in available
    ]


@lru_cache(maxsize=2)
def reference_md5s(reference: Path) -> dict[str, tuple[int, str]]:
    """Each contig's length and M5: from a sequence dictionary beside the FASTA if there is
    one (``samtools dict``/Picard ``.dict``; reading a 3 GB FASTA takes a while), else computed."""
    for candidate in (reference.with_suffix(".dict"), reference.with_name(reference.name + ".dict")):
        if candidate.exists():
            found: dict[str, tuple[int, str]] = {}
            for line in candidate.read_text().splitlines():
                if line.startswith("@SQ"):
                    tags = dict(f.split(":", 1) for f in line.split("\t")[1:] if ":" in f)
                    if "M5" in tags:
                        found[tags["SN"]] = (int(tags["LN"]), tags["M5"].lower())
            if found:
                return found
    return contig_md5s(reference)


def n50(lengths: Counter[int]) -> int:
    """The read length at which half the bases are in reads at least that long."""
    total = sum(length * count for length, count in lengths.items())
    running = 0
    for length in sorted(lengths, reverse=True):
        running += length * lengths[length]
        if 2 * running >= total:
            return length
    return 0


def check_unaligned_bam(path: Path, header: dict[str, Any], report: AlignmentReport) -> AlignmentReport:
    """A long-read uBAM (PacBio or ONT): platform from @RG, reads, bases and N50."""
    report.kind = "ubam"
    groups = header.get("RG", [])
    platforms = {str(rg.get("PL", "")).upper() for rg in groups}
    descriptions = " ".join(str(rg.get("DS", "")) for rg in groups)
    report.samples = [str(rg["SM"]) for rg in groups if rg.get("SM")]
    if "PACBIO" in platforms:
        report.long_read_platform = "PacBio"
        if "READTYPE=" not in descriptions:
            report.problems.append(problem("ubam.no_read_type", "PacBio @RG DS has no READTYPE", "@RG"))
    elif "ONT" in platforms:
        report.long_read_platform = "ONT"
        if "basecall_model=" not in descriptions:
            report.problems.append(
                problem("ubam.no_basecall_model", "ONT @RG DS has no basecall_model", "@RG")
            )
    else:
        report.problems.append(
            problem(
                "ubam.unknown_platform",
                f"unaligned BAM whose @RG PL is {sorted(platforms) or 'missing'}: neither PACBIO nor ONT",
                "@RG",
            )
        )
    if not check_eof(path, "bam", report):
        return report
    lengths: Counter[int] = Counter()
    reads = 0
    try:
        with pysam.AlignmentFile(str(path), "rb", check_sq=False) as af:
            for read in af.fetch(until_eof=True):
                lengths[read.query_length] += 1
                reads += 1
    except (OSError, ValueError) as exc:
        report.problems.append(problem("bam.undecodable", f"record {reads + 1} cannot be decoded: {exc}"))
        return report
    bases = sum(length * count for length, count in lengths.items())
    report.raw_reads, report.raw_bases = reads, bases
    report.metrics.update(
        {
            "reads": reads,
            "bases": bases,
            "read_length_n50": n50(lengths),
            "max_length": max(lengths, default=0),
            "platform": report.long_read_platform,
        }
    )
    if reads == 0:
        report.problems.append(problem("bam.no_reads", "the file holds no reads"))
    return report
