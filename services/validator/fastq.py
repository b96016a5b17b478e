"""FASTQ checks: every record parsed, at close to the speed of decompression.

A genome's FASTQ pair is 50-100 GB of gzip, so the checks must not be the bottleneck.
Python cannot afford to touch each record in a loop, so records are checked a block at a
time with bytes operations that run in C: one ``split`` of a few MB into lines, then
whole-block joins, ``translate`` and ``count`` for the header, separator, length, alphabet
and quality rules. Only when a block breaks a rule is it walked record by record, to name
the first offending record. Decompression is python-isal, with our own member loop so that
truncation, CRC errors and trailing garbage are caught, and with bounded output per step
so that memory stays flat whatever the file.

Read names of the two mates are compared through a digest of each file's normalised
headers: R1 and R2 run in separate processes, and only when the digests differ are the two
files walked side by side to find the first mismatched name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, cast

from isal import isal_zlib

from services.validator.problems import problem
from services.validator.sources import open_stream
from shared.events import Problem

READ_SIZE = 1 << 18
"""Compressed bytes read per step."""
OUT_LIMIT = 1 << 21
"""Most decompressed bytes produced per step: a gzip bomb cannot grow memory."""
BLOCK = 1 << 20
"""Decompressed bytes parsed as one block: small enough to stay in the CPU caches."""

BASES = b"ACGTNacgtn"
VALID_QUALITY = bytes(range(33, 127))
BELOW_PHRED64 = bytes(range(33, 59))
"""Quality characters that cannot occur in Phred+64 (whose lowest, Solexa -5, is ';')."""
ABOVE_PHRED33_ILLUMINA = bytes(range(75, 127))
"""Above 'J' (Q41): normal for Phred+64 data, rare for Illumina Phred+33."""
_q30 = bytearray(256)
for _c in range(63, 127):  # '?' = Q30 in Phred+33
    _q30[_c] = 0xFF
Q30_TABLE = bytes(_q30)


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


def decompressed(handle: Readable) -> Iterator[bytes]:
    first = handle.read(2)
    if first == b"\x1f\x8b":
        return gzip_chunks(_Prefixed(first, handle))
    return plain_chunks(_Prefixed(first, handle))


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


def line_blocks(chunks: Iterator[bytes]) -> Iterator[list[bytes]]:
    """Lists of whole FASTQ records' lines (a multiple of 4), about BLOCK bytes each.

    Only the last list may hold a partial record: the caller sees it as the file's end.
    """
    pending = b""
    for chunk in chunks:
        pending = pending + chunk if pending else chunk
        if len(pending) < BLOCK:
            continue
        cut = pending.rfind(b"\n")
        if cut < 0:
            continue  # one very long line (a long read): wait for its end
        lines = pending[:cut].split(b"\n")
        whole = len(lines) - len(lines) % 4
        rest = pending[cut + 1 :]
        if whole < len(lines):
            pending = b"\n".join(lines[whole:]) + b"\n" + rest
            del lines[whole:]
        else:
            pending = rest
        if lines:
            yield lines
    if pending:
        lines = pending.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        if lines:
            yield lines


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
    first_name: str = ""
    headers_digest: str = ""
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


def split_name(header: bytes) -> tuple[bytes, int | None]:
    """The read name without ``@`` and mate suffix, and the read number (1, 2 or None)."""
    name, _, comment = header[1:].partition(b" ")
    number: int | None = None
    if name.endswith((b"/1", b"/2")):
        number = name[-1] - 48
        name = name[:-2]
    elif comment[:2] in (b"1:", b"2:"):
        number = comment[0] - 48
    return name, number


class FastqScanner:
    """Checks blocks of FASTQ lines; carries the state that spans blocks."""

    def __init__(self) -> None:
        self.report = FastqReport()
        self._headers = hashlib.sha1(usedforsecurity=False)
        self._numbers: set[int | None] = set()
        self._seen_low = False
        self._seen_high = False
        self._codes: set[str] = set()
        self.broken = False

    def _add(self, code: str, message: str, location: str = "") -> None:
        if code not in self._codes:
            self._codes.add(code)
            self.report.problems.append(problem(code, message, location))

    def block(self, lines: list[bytes]) -> None:
        if self.broken:
            return
        report = self.report
        start = report.reads
        whole = len(lines) - len(lines) % 4
        if whole != len(lines):
            self._add(
                "fastq.truncated_record",
                f"the file ends inside a record: {len(lines) - whole} line(s) of 4",
                _location(start + whole // 4),
            )
            del lines[whole:]
        if not lines:
            return
        heads = lines[0::4]
        seqs = lines[1::4]
        plus = lines[2::4]
        quals = lines[3::4]
        m = len(heads)
        joined_heads = b"\n".join(heads)
        if not joined_heads.startswith(b"@") or joined_heads.count(b"\n@") != m - 1:
            bad = next(i for i, h in enumerate(heads) if not h.startswith(b"@"))
            self._fatal("fastq.bad_header", "a record's first line must start with '@'", start + bad)
            return
        if b"\r" in joined_heads:
            self._fatal("fastq.crlf", "Windows line endings (CR LF); FASTQ lines end in LF only", start)
            return
        if len(set(plus)) != 1 or plus[0] != b"+":
            for i, p in enumerate(plus):
                if not p.startswith(b"+") or (len(p) > 1 and p[1:] != heads[i][1:]):
                    self._fatal(
                        "fastq.bad_separator",
                        "the third line of a record must be '+' (optionally repeating the name)",
                        start + i,
                    )
                    return
        seq_lengths = list(map(len, seqs))
        if seq_lengths != list(map(len, quals)):
            bad = next(i for i in range(m) if len(seqs[i]) != len(quals[i]))
            self._fatal(
                "fastq.length_mismatch",
                f"sequence has {len(seqs[bad])} bases but quality has {len(quals[bad])} characters",
                start + bad,
            )
            return
        sequence = b"".join(seqs)
        if sequence.translate(None, BASES):
            bad = next(i for i in range(m) if seqs[i].translate(None, BASES))
            odd = sorted(set(seqs[bad].translate(None, BASES).decode("latin-1")))
            self._add("fastq.bad_base", f"bases outside ACGTN: {''.join(odd)!r}", _location(start + bad))
        quality = b"".join(quals)
        if quality.translate(None, VALID_QUALITY):
            bad = next(i for i in range(m) if quals[i].translate(None, VALID_QUALITY))
            self._add(
                "fastq.bad_quality",
                "quality characters outside '!'..'~' (Phred+33 range)",
                _location(start + bad),
            )
        report.q30_bases += int.from_bytes(quality.translate(Q30_TABLE), "little").bit_count() // 8
        if not self._seen_low:  # once a character below ';' is seen, Phred+64 is ruled out
            self._seen_low = len(quality.translate(None, BELOW_PHRED64)) < len(quality)
            if not self._seen_high:
                self._seen_high = len(quality.translate(None, ABOVE_PHRED33_ILLUMINA)) < len(quality)
        self._read_names(heads, joined_heads, start)
        report.reads += m
        report.bases += len(sequence)
        shortest = min(seq_lengths)
        if report.min_length is None or shortest < report.min_length:
            report.min_length = shortest
        report.max_length = max(report.max_length, max(seq_lengths))

    def _read_names(self, heads: list[bytes], joined: bytes, start: int) -> None:
        """Fold the block's names into the digests and note the read-number field.

        Casava (``@name 1:N:0:BC``) and ``/1`` names are normalised in bulk; anything
        else goes through :func:`split_name` one header at a time.
        """
        m = len(heads)
        if start == 0:
            name, number = split_name(heads[0])
            self.report.first_name = name.decode("latin-1")
        spaces = joined.count(b" ")
        canon: bytes | None = None
        for number in (1, 2):
            if spaces == m and joined.count(b" %d:" % number) == m:
                canon = joined.replace(b" %d:" % number, b" ?:")
                self._numbers.add(number)
                break
            if spaces == 0 and (joined + b"\n").count(b"/%d\n" % number) == m:
                canon = (joined + b"\n").replace(b"/%d\n" % number, b"/?\n")[:-1]
                self._numbers.add(number)
                break
        if canon is None:
            parts = [split_name(h) for h in heads]
            numbers = {n for _, n in parts}
            self._numbers.update(numbers)
            canon = b"\n".join(n for n, _ in parts)
            self._headers.update(b"names:" + canon + b"\n")
            return
        self._headers.update(canon + b"\n")

    def _fatal(self, code: str, message: str, record: int) -> None:
        self._add(code, message + "; the rest of the file was not parsed", _location(record))
        self.broken = True

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
        numbers = self._numbers - {None}
        if len(numbers) > 1:
            self._add("fastq.mixed_read_numbers", "the file mixes read 1 and read 2 records")
        report.read_number = next(iter(numbers)) if len(numbers) == 1 and None not in self._numbers else None
        report.headers_digest = self._headers.hexdigest()
        return report


def check_fastq(url: str) -> FastqReport:
    """Every record of the FASTQ at ``url`` (plain, gzip or BGZF), checked and counted."""
    scanner = FastqScanner()
    with open_stream(url) as handle:
        magic = handle.read(4)
        if magic[:2] == b"\x1f\x8b":
            rest = handle.read(12)
            first = magic + rest
            scanner.report.compression = "bgzf" if first[3:4] == b"\x04" and first[12:14] == b"BC" else "gzip"
            chunks = gzip_chunks(_Prefixed(first, handle))
        else:
            chunks = plain_chunks(_Prefixed(magic, handle))
        try:
            for lines in line_blocks(chunks):
                scanner.block(lines)
        except GzipFault as fault:
            scanner.report.problems.append(problem(fault.code, str(fault), f"compressed byte {fault.offset}"))
            scanner.broken = True
    return scanner.finish()


def names(url: str) -> Iterator[tuple[bytes, int | None]]:
    """Each record's name and read number, for the side-by-side comparison of mates."""
    with open_stream(url) as handle:
        for lines in line_blocks(decompressed(handle)):
            for header in lines[0::4]:
                yield split_name(header)


def first_name_mismatch(url1: str, url2: str) -> tuple[int, str, str] | None:
    """The first record whose names differ between two mate files, or None if all agree."""
    index = -1
    for index, (a, b) in enumerate(zip(names(url1), names(url2), strict=False)):
        if a[0] != b[0]:
            return index, a[0].decode("latin-1"), b[0].decode("latin-1")
    return None
