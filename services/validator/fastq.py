"""FASTQ checks: every record parsed, at close to the speed of decompression.

A genome's FASTQ pair is 50-100 GB of gzip, so the checks must not be the bottleneck.
Python cannot afford to touch each record, and even whole-block bytes operations walked
each block a dozen times and cost as much as the decompression. So the records are checked
by a small C scanner (``_fastq_scan.c``, built by ``pip install``) in one pass per block:
header, separator, sequence/quality length, alphabet, quality range, Q30, the Phred+64
probe, read names and read numbers. This module keeps what spans blocks (the partial
record carried over, counts, the first problem of each code) and turns the scanner's
findings into problems. Decompression is python-isal, with our own member loop so that
truncation, CRC errors and trailing garbage are caught, and with bounded output per step
so that memory stays flat whatever the file.

Read names of the two mates are compared through a digest of each file's normalised names
(no ``@``, no ``/1`` ``/2``, no comment after the first space or TAB): R1 and R2 run in separate processes, and only when
the digests differ are the two files walked side by side to find the first mismatched name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, cast

from isal import isal_zlib

from services.validator._fastq_scan import Block, scan
from services.validator.problems import problem
from services.validator.sources import Source, open_stream
from shared.events import Problem

READ_SIZE = 1 << 16
"""Compressed bytes read per step: their output (~200 kB) stays in the CPU's L2 cache
between the decompressor writing it and the scanner reading it; 256 kB steps ran slower."""
OUT_LIMIT = 1 << 18
"""Most decompressed bytes produced per step: a gzip bomb cannot grow memory."""
BLOCK = 1 << 20
"""Bytes of a plain (uncompressed) FASTQ read per step."""
STITCH = 1 << 12
"""Bytes of a chunk put behind the carried partial record to complete it (a longer record
takes the slow way: the whole chunk behind it)."""

BASES = b"ACGTNacgtn"
FINGERPRINT_RECORDS = 256
"""Records whose sequences make a file's fingerprint: two mates never agree on all of them,
one file given twice always does."""


DecompressError = cast(type[Exception], isal_zlib.error)


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class GzipFault(Exception):
    """The gzip framing is broken: ``code`` says how."""

    def __init__(self, code: str, message: str, offset: int) -> None:
        super().__init__(message)
        self.code = code
        self.offset = offset


def gzip_chunks(handle: Readable) -> Iterator[bytes]:
    """The decompressed bytes of every gzip member in ``handle``; raises :class:`GzipFault`.

    zlib-style decompressors stop quietly at the end of a member and leave what follows in
    ``unused_data``: the next member, or garbage that ``gzip -t`` would report. A stream
    that ends inside a member is truncated. Both are checked here explicitly.
    """
    offset = 0
    member = 0
    d = isal_zlib.decompressobj(31)
    data = b""
    while True:
        if not data:
            data = handle.read(READ_SIZE)
            if not data:
                break
        try:
            out = d.decompress(data, OUT_LIMIT)
        except DecompressError as exc:
            text = str(exc)
            code = "gzip.crc_mismatch" if "checksum" in text.lower() else "gzip.corrupt"
            if "length" in text.lower():
                code = "gzip.length_mismatch"
            raise GzipFault(code, f"gzip member {member + 1}: {text}", offset) from exc
        offset += len(data) - len(d.unconsumed_tail) - len(d.unused_data)
        if out:
            yield out
        if d.unconsumed_tail:
            data = d.unconsumed_tail
            continue
        if d.eof:
            member += 1
            rest = d.unused_data
            while len(rest) < 2:
                more = handle.read(READ_SIZE)
                if not more:
                    break
                rest += more
            if not rest:
                return
            if rest[:2] != b"\x1f\x8b":
                raise GzipFault(
                    "gzip.trailing_garbage",
                    f"{len(rest)}+ bytes after the end of gzip member {member} are not gzip data",
                    offset,
                )
            d = isal_zlib.decompressobj(31)
            data = rest
            continue
        data = b""
    try:
        out = d.flush()
    except DecompressError as exc:
        raise GzipFault("gzip.corrupt", f"gzip member {member + 1}: {exc}", offset) from exc
    if out:
        yield out
    if not d.eof:
        raise GzipFault(
            "gzip.truncated", f"the stream ends inside gzip member {member + 1} (file cut short)", offset
        )


def plain_chunks(handle: Readable) -> Iterator[bytes]:
    while chunk := handle.read(BLOCK):
        yield chunk


class _Prefixed:
    """A handle with bytes already read put back in front."""

    def __init__(self, prefix: bytes, handle: Readable) -> None:
        self._prefix = prefix
        self._handle = handle

    def read(self, size: int) -> bytes:
        if self._prefix:
            out, self._prefix = self._prefix, b""
            return out + self._handle.read(max(0, size - len(out)))
        return self._handle.read(size)


@dataclass
class FastqReport:
    """What the FASTQ checks found in one file."""

    reads: int = 0
    bases: int = 0
    min_length: int | None = None
    max_length: int = 0
    q30_bases: int = 0
    compression: str = "none"
    read_number: int | None = None
    """1 or 2 when every record's name carries that read number; None otherwise."""
    first_name: str = ""
    headers_digest: str = ""
    sequences_digest: str = ""
    problems: list[Problem] = field(default_factory=list)

    def metrics(self) -> dict[str, int | float | str | bool | None]:
        return {
            "reads": self.reads,
            "bases": self.bases,
            "min_length": self.min_length if self.min_length is not None else 0,
            "mean_length": round(self.bases / self.reads, 2) if self.reads else 0.0,
            "max_length": self.max_length,
            "q30_fraction": round(self.q30_bases / self.bases, 6) if self.bases else 0.0,
            "quality_encoding": "phred+33",
            "compression": self.compression,
            "read_number": self.read_number,
        }


def _location(record: int) -> str:
    return f"record {record + 1} (line {4 * record + 1})"


FATAL_MESSAGES = {
    "fastq.bad_header": "a record's first line must start with '@'",
    "fastq.crlf": "Windows line endings (CR LF); FASTQ lines end in LF only",
    "fastq.bad_separator": "the third line of a record must be '+' (optionally repeating the name)",
}


class FastqScanner:
    """Feeds decompressed bytes to the C scanner and keeps the state that spans blocks.

    :func:`scan` checks the whole records at the start of a block; the partial record at
    its end is carried over and put in front of the next chunk, so records may be split
    anywhere between chunks. Of each non-fatal problem the first in the file is kept;
    a fatal one (the record structure is lost) ends the parse.
    """

    def __init__(self) -> None:
        self.report = FastqReport()
        self._headers = hashlib.sha1(usedforsecurity=False)
        self._sequences = hashlib.sha1(usedforsecurity=False)
        self._fingerprinted = 0
        self._read1 = self._read2 = self._unnumbered = 0
        self._seen_low = False
        self._seen_high = False
        self._codes: set[str] = set()
        self._pending = b""
        self.broken = False

    def _add(self, code: str, message: str, location: str = "") -> None:
        if code not in self._codes:
            self._codes.add(code)
            self.report.problems.append(problem(code, message, location))

    def feed(self, chunk: bytes) -> list[bytes]:
        """Check the whole records ``chunk`` completes; their read names, newline-ended.

        Only the record split across the boundary is stitched together from the carried
        bytes and the start of ``chunk``; the rest of ``chunk`` is scanned in place. Copying
        every chunk behind the carried bytes cost as much as the scan itself.
        """
        if self.broken:
            return []
        names = []
        offset = 0
        if self._pending:
            carried = len(self._pending)
            stitched = self._pending + chunk[:STITCH]
            block = scan(stitched)
            if block.consumed < carried:  # a record longer than the stitch (or a fault in it)
                data = self._pending + chunk
                block = scan(data)
                self._fingerprint(data, block.consumed)
                self._pending = data[block.consumed :]
                return [self._fold(block)]
            self._fingerprint(stitched, block.consumed)
            names.append(self._fold(block))
            if self.broken:
                return names
            offset = block.consumed - carried
        view = memoryview(chunk)[offset:]
        block = scan(view)
        self._fingerprint(view, block.consumed)
        self._pending = chunk[offset + block.consumed :]
        names.append(self._fold(block))
        return names

    def end(self) -> bytes:
        """The end of the file: a last line without its newline still counts as a line."""
        data, self._pending = self._pending, b""
        if self.broken or not data:
            return b""
        if not data.endswith(b"\n"):
            data += b"\n"
        block = scan(data)
        self._fingerprint(data, block.consumed)
        names = self._fold(block)
        lines = data.count(b"\n", block.consumed)
        if lines and not self.broken:
            self._add(
                "fastq.truncated_record",
                f"the file ends inside a record: {lines} line(s) of 4",
                _location(self.report.reads),
            )
        return names

    def _fingerprint(self, data: bytes | memoryview, consumed: int) -> None:
        """Add the sequences of the first records to the file's fingerprint (whole records only:
        ``consumed`` ends at one); after :data:`FINGERPRINT_RECORDS` it costs nothing."""
        wanted = FINGERPRINT_RECORDS - self._fingerprinted
        if wanted <= 0 or not consumed:
            return
        sequences = bytes(data[:consumed]).split(b"\n", 4 * wanted)[1 : 4 * wanted : 4]
        for sequence in sequences:
            self._sequences.update(sequence + b"\n")
        self._fingerprinted += len(sequences)

    def _fold(self, block: Block) -> bytes:
        report = self.report
        start = report.reads
        if block.bad_base_record is not None and block.bad_base_sequence is not None:
            odd = sorted(set(block.bad_base_sequence.translate(None, BASES).decode("latin-1")))
            self._add(
                "fastq.bad_base",
                f"bases outside ACGTN: {''.join(odd)!r}",
                _location(start + block.bad_base_record),
            )
        if block.bad_quality_record is not None:
            self._add(
                "fastq.bad_quality",
                "quality characters outside '!'..'~' (Phred+33 range)",
                _location(start + block.bad_quality_record),
            )
        if block.reads:
            if not start:
                report.first_name = block.names.partition(b"\n")[0].decode("latin-1")
            report.reads += block.reads
            report.bases += block.bases
            report.q30_bases += block.q30_bases
            if block.min_length is not None and (
                report.min_length is None or block.min_length < report.min_length
            ):
                report.min_length = block.min_length
            report.max_length = max(report.max_length, block.max_length)
            self._seen_low = self._seen_low or block.low_quality
            self._seen_high = self._seen_high or block.high_quality
            self._read1 += block.read1
            self._read2 += block.read2
            self._unnumbered += block.unnumbered
            self._headers.update(block.names)
        if block.fault is not None and block.fault_record is not None:
            if block.fault == "fastq.length_mismatch":
                message = (
                    f"sequence has {block.sequence_length} bases but quality has "
                    f"{block.quality_length} characters"
                )
            else:
                message = FATAL_MESSAGES[block.fault]
            self._fatal(block.fault, message, start + block.fault_record)
        return block.names

    def _fatal(self, code: str, message: str, record: int) -> None:
        self._add(code, message + "; the rest of the file was not parsed", _location(record))
        self.broken = True

    def run(self, url: Source) -> Iterator[bytes]:
        """Check the file at ``url``, yielding each block's read names as they are checked."""
        with open_stream(url) as handle:
            magic = handle.read(4)
            if magic[:2] == b"\x1f\x8b":
                rest = handle.read(12)
                first = magic + rest
                self.report.compression = (
                    "bgzf" if first[3:4] == b"\x04" and first[12:14] == b"BC" else "gzip"
                )
                chunks = gzip_chunks(_Prefixed(first, handle))
            else:
                chunks = plain_chunks(_Prefixed(magic, handle))
            try:
                for chunk in chunks:
                    yield from self.feed(chunk)
                    if self.broken:
                        return
            except GzipFault as fault:
                self.report.problems.append(
                    problem(fault.code, str(fault), f"compressed byte {fault.offset}")
                )
                self.broken = True
                return
            yield self.end()

    def finish(self) -> FastqReport:
        report = self.report
        if (
            not report.reads
            and not self.broken
            and not any(p.code.startswith("gzip.") for p in report.problems)
        ):
            self._add("fastq.no_reads", "the file holds no reads")
        if self._seen_high and not self._seen_low and report.reads:
            self._add(
                "fastq.phred64",
                "qualities look Phred+64 (none below ';', many above 'J'); NGC takes Phred+33",
            )
        if self._read1 and self._read2:
            self._add("fastq.mixed_read_numbers", "the file mixes read 1 and read 2 records")
        report.read_number = None
        if not self._unnumbered and bool(self._read1) != bool(self._read2):
            report.read_number = 1 if self._read1 else 2
        report.headers_digest = self._headers.hexdigest()
        report.sequences_digest = self._sequences.hexdigest() if self._fingerprinted else ""
        return report


def check_fastq(url: Source) -> FastqReport:
    """Every record of the FASTQ at ``url`` (plain, gzip or BGZF), checked and counted."""
    scanner = FastqScanner()
    for _ in scanner.run(url):
        pass
    return scanner.finish()


def names(url: Source) -> Iterator[bytes]:
    """Each checked record's read name, for the side-by-side comparison of mates."""
    for block in FastqScanner().run(url):
        yield from block.split(b"\n")[:-1]


def first_name_mismatch(url1: Source, url2: Source) -> tuple[int, str, str] | None:
    """The first record whose names differ between two mate files, or None if all agree."""
    for index, (a, b) in enumerate(zip(names(url1), names(url2), strict=False)):
        if a != b:
            return index, a.decode("latin-1"), b.decode("latin-1")
    return None
