"""htsget slices: which bytes of an archived CRAM or bgzipped VCF hold a genomic range, found
in the file's own index, so a slice is cut without decoding one read or variant.

A slice is a list of pieces: ranges of the stored file's plaintext, copied as they are, and
the few bytes made here (a BGZF block's part, a VCF header, the end-of-file marker). Its
size is known before a byte is read, so a slice goes out with its length like a whole file.

- CRAM: the ``.crai`` lists each slice's reference, span and container; a slice is the file's
  header (everything before its first container), every container holding a slice that
  overlaps the range, and CRAM's end-of-file container. Containers are whole, so reads near
  the range's ends may come too (htsget lets a server send more; the client filters).
- VCF: the ``.tbi`` gives, for the range's bins, chunks of BGZF virtual offsets; a slice is
  the header (its text put into blocks of its own, since the last header lines share a block
  with the first records), then each chunk: its first and last block cut to the chunk and
  compressed again, the blocks between copied as stored, and BGZF's end-of-file block.

The reading is pure: ``read_at(offset, length)`` is the caller's (the archive's decrypted
body, which authenticates every segment it opens), and nothing here knows where a file is.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from shared.events import GenomicRange

ReadAt = Callable[[int, int], bytes]
"""``read_at(offset, length)``: that many plaintext bytes of the stored file from ``offset``."""

UNMAPPED = "*"
"""htsget's reference name of the unplaced, unmapped reads."""

CRAM_EOF = bytes.fromhex("0f000000ffffffff0fe0454f4600000000010005bdd94f0001000606010001000100ee63014b")
"""CRAM 3's end-of-file container."""
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
BGZF_MAX_INPUT = 0xFF00
"""Plaintext per BGZF block made here (htslib's own limit, so a block never outgrows 64 KiB)."""
MAX_HEADER = 64 << 20
"""The most a file's header may hold here (a CRAM's header container, a VCF's header lines):
a header is read whole into memory, and an index that places the first record past this is
not believed."""
_TBI_LINEAR_SHIFT = 14
_TBI_PSEUDO_BIN = 37450


class SliceRefused(ValueError):
    """The range cannot be sliced as asked; ``code`` is htsget's error name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class UnreadableIndex(ValueError):
    """The stored index or file does not read as its format says: a fault of the archive's."""


@dataclass(frozen=True)
class Stored:
    """``length`` bytes of the stored file's plaintext from ``offset``."""

    offset: int
    length: int


@dataclass(frozen=True)
class Made:
    """Bytes made for the slice."""

    data: bytes


Piece = Stored | Made


def size_of(pieces: Sequence[Piece]) -> int:
    return sum(p.length if isinstance(p, Stored) else len(p.data) for p in pieces)


def plaintext(pieces: Sequence[Piece], read_at: ReadAt, step: int = 1 << 20) -> Iterator[bytes]:
    """The slice's bytes in order, stored ranges read ``step`` bytes at a time."""
    for piece in pieces:
        if isinstance(piece, Made):
            yield piece.data
            continue
        done = 0
        while done < piece.length:
            want = min(step, piece.length - done)
            data = read_at(piece.offset + done, want)
            if len(data) != want:
                raise UnreadableIndex("the stored file ends before a range its index names")
            yield data
            done += want


# -- the range asked ---------------------------------------------------------------------


def _bounded(locus: GenomicRange, references: dict[str, int]) -> tuple[int, int]:
    """The range as 0-based half-open coordinates within its reference, or a refusal."""
    length = references.get(locus.reference_name)
    if length is None:
        raise SliceRefused("NotFound", "the file has no reference of that name")
    start = locus.start or 0
    end = length if locus.end is None else min(locus.end, length)
    if start >= length:
        raise SliceRefused("InvalidRange", f"the range starts past the reference's end ({length})")
    return start, end


# -- CRAM --------------------------------------------------------------------------------


def _itf8(data: bytes, at: int) -> tuple[int, int]:
    """CRAM's ITF-8 integer at ``at`` (signed 32 bits) and where the next field starts."""
    first = data[at]
    if first < 0x80:
        return first, at + 1
    if first < 0xC0:
        return ((first & 0x7F) << 8) | data[at + 1], at + 2
    if first < 0xE0:
        return ((first & 0x3F) << 16) | (data[at + 1] << 8) | data[at + 2], at + 3
    if first < 0xF0:
        value = ((first & 0x1F) << 24) | int.from_bytes(data[at + 1 : at + 4], "big")
        return value, at + 4
    value = ((first & 0x0F) << 28) | (data[at + 1] << 20) | (data[at + 2] << 12) | (data[at + 3] << 4)
    value |= data[at + 4] & 0x0F
    return value - (1 << 32) if value & (1 << 31) else value, at + 5


def _ltf8(data: bytes, at: int) -> int:
    """Where the field after CRAM's LTF-8 integer at ``at`` starts (its value is not needed)."""
    first = data[at]
    extra = 0
    while extra < 8 and first & (0x80 >> extra):
        extra += 1
    return at + 1 + extra


def cram_header(read_at: ReadAt, header_end: int) -> str:
    """The SAM header text of a CRAM 3, from its file definition and header container."""
    if header_end > MAX_HEADER:
        raise UnreadableIndex(f"the index puts the first container past {MAX_HEADER} bytes")
    data = read_at(0, header_end)
    if data[:4] != b"CRAM" or data[4] < 3:
        raise UnreadableIndex("not a CRAM 3 file")
    try:
        at = 26 + 4  # the file definition, then the container's length
        for _ in range(4):  # reference, start, span, records
            _, at = _itf8(data, at)
        at = _ltf8(data, _ltf8(data, at))  # record counter, bases
        _, at = _itf8(data, at)  # blocks
        landmarks, at = _itf8(data, at)
        for _ in range(landmarks):
            _, at = _itf8(data, at)
        at += 4  # the container header's CRC32
        method, at = data[at], at + 2  # then the block's content type
        _, at = _itf8(data, at)  # content id
        stored, at = _itf8(data, at)
        _, at = _itf8(data, at)  # raw size
        block = data[at : at + stored]
        if method == 1:
            block = gzip.decompress(block)
        elif method != 0:
            raise UnreadableIndex("the CRAM header block is compressed in a way this server does not read")
        (length,) = struct.unpack_from("<i", block)
        return block[4 : 4 + length].split(b"\0", 1)[0].decode()
    except (IndexError, struct.error, OSError, EOFError, UnicodeDecodeError) as exc:
        raise UnreadableIndex(f"the CRAM header does not read: {exc}") from None


_SQ = re.compile(r"^@SQ\t(.*)$", re.MULTILINE)


def sam_references(header: str) -> list[tuple[str, int]]:
    """Each ``@SQ`` line's name and length, in the header's order (a CRAM's reference ids)."""
    found = []
    for line in _SQ.findall(header):
        tags = dict(field.split(":", 1) for field in line.split("\t") if ":" in field)
        found.append((tags.get("SN", ""), int(tags.get("LN", "0"))))
    return found


@dataclass(frozen=True)
class _CraiEntry:
    reference: int
    start: int
    """1-based, as CRAM counts."""
    span: int
    container: int


def _crai(index: bytes) -> list[_CraiEntry]:
    try:
        text = gzip.decompress(index).decode("ascii")
        entries = []
        for line in text.splitlines():
            if line.strip():
                reference, start, span, container, _, _ = (int(f) for f in line.split("\t"))
                entries.append(_CraiEntry(reference, start, span, container))
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableIndex(f"the CRAM index does not read: {exc}") from None
    if not entries:
        raise UnreadableIndex("the CRAM index lists no container")
    return entries


def cram_slice(index: bytes, read_at: ReadAt, size: int, locus: GenomicRange | None) -> list[Piece]:
    """The pieces of a CRAM slice holding ``locus`` (None: only the header, as htsget's
    ``class=header`` asks)."""
    entries = _crai(index)
    containers = sorted({e.container for e in entries})
    body_end = size - len(CRAM_EOF) if read_at(size - len(CRAM_EOF), len(CRAM_EOF)) == CRAM_EOF else size
    if containers[0] < 26 or containers[-1] >= body_end:
        raise UnreadableIndex("the index names a container outside the file")
    header = Stored(0, containers[0])
    if locus is None:
        return [header, Made(CRAM_EOF)]
    if locus.reference_name == UNMAPPED:
        wanted = {e.container for e in entries if e.reference == -1}
    else:
        references = sam_references(cram_header(read_at, containers[0]))
        start, end = _bounded(locus, dict(references))
        reference = [name for name, _ in references].index(locus.reference_name)
        wanted = {
            e.container
            for e in entries
            if e.reference == reference and e.start <= end and e.start + e.span - 1 >= start + 1
        }
    ends = dict(zip(containers, [*containers[1:], body_end], strict=True))
    pieces: list[Piece] = [header]
    for container in sorted(wanted):
        last = pieces[-1]
        if isinstance(last, Stored) and last.offset + last.length == container:
            pieces[-1] = Stored(last.offset, ends[container] - last.offset)
        else:
            pieces.append(Stored(container, ends[container] - container))
    pieces.append(Made(CRAM_EOF))
    return pieces


# -- VCF (bgzipped, tabix-indexed) ------------------------------------------------------


def bgzf_blocks(data: bytes) -> bytes:
    """``data`` in BGZF blocks (none for no data)."""
    out = bytearray()
    for at in range(0, len(data), BGZF_MAX_INPUT):
        chunk = data[at : at + BGZF_MAX_INPUT]
        squeeze = zlib.compressobj(6, zlib.DEFLATED, -15)
        deflated = squeeze.compress(chunk) + squeeze.flush()
        out += b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00"
        out += struct.pack("<H", 18 + len(deflated) + 8 - 1)
        out += deflated + struct.pack("<II", zlib.crc32(chunk), len(chunk))
    return bytes(out)


def _block_at(read_at: ReadAt, offset: int) -> tuple[bytes, int]:
    """The plaintext of the BGZF block at ``offset`` and the block's stored length."""
    head = read_at(offset, 18)
    if len(head) < 18 or head[:4] != b"\x1f\x8b\x08\x04" or head[12:14] != b"BC":
        raise UnreadableIndex(f"no BGZF block where the index says one starts ({offset})")
    length = struct.unpack_from("<H", head, 16)[0] + 1
    block = read_at(offset, length)
    try:
        return zlib.decompress(block[18:-8], -15), length
    except zlib.error as exc:
        raise UnreadableIndex(f"the BGZF block at {offset} does not inflate: {exc}") from None


@dataclass(frozen=True)
class _Tabix:
    names: list[str]
    bins: list[dict[int, list[tuple[int, int]]]]
    linear: list[list[int]]


def _tabix(index: bytes) -> _Tabix:
    try:
        data = gzip.decompress(index)
        if data[:4] != b"TBI\x01":
            raise UnreadableIndex("not a tabix index")
        n_ref = struct.unpack_from("<i", data, 4)[0]
        l_nm = struct.unpack_from("<i", data, 32)[0]
        names = [n.decode() for n in data[36 : 36 + l_nm].split(b"\0") if n]
        at = 36 + l_nm
        bins, linear = [], []
        for _ in range(n_ref):
            (n_bin,) = struct.unpack_from("<i", data, at)
            at += 4
            chunks: dict[int, list[tuple[int, int]]] = {}
            for _ in range(n_bin):
                number, n_chunk = struct.unpack_from("<Ii", data, at)
                at += 8
                pairs = struct.unpack_from(f"<{2 * n_chunk}Q", data, at)
                at += 16 * n_chunk
                chunks[number] = list(zip(pairs[::2], pairs[1::2], strict=True))
            (n_intv,) = struct.unpack_from("<i", data, at)
            at += 4
            linear.append(list(struct.unpack_from(f"<{n_intv}Q", data, at)))
            at += 8 * n_intv
            bins.append(chunks)
    except (OSError, EOFError, struct.error, UnicodeDecodeError) as exc:
        raise UnreadableIndex(f"the tabix index does not read: {exc}") from None
    if len(names) != n_ref:
        raise UnreadableIndex("the tabix index names another number of references than it indexes")
    return _Tabix(names, bins, linear)


def _bins(start: int, end: int) -> list[int]:
    """The bins of the UCSC binning scheme (as BAI and tabix use it) that overlap [start, end)."""
    end -= 1
    found = [0]
    for shift, first in ((26, 1), (23, 9), (20, 73), (17, 585), (14, 4681)):
        found.extend(range(first + (start >> shift), first + (end >> shift) + 1))
    return found


def _vcf_header(read_at: ReadAt, size: int) -> tuple[str, int]:
    """The header's text and the virtual offset of the first record."""
    text = bytearray()
    offset = 0
    while offset < size:
        block, length = _block_at(read_at, offset)
        start = len(text)
        text += block
        if len(text) > MAX_HEADER:
            raise UnreadableIndex(f"no record within the first {MAX_HEADER} bytes of the VCF")
        lines_end = 0
        while lines_end < len(text):
            if text[lines_end : lines_end + 1] != b"#":
                within = lines_end - start
                return text[:lines_end].decode(), (offset << 16) | within
            newline = text.find(b"\n", lines_end)
            if newline < 0:
                break
            lines_end = newline + 1
        offset += length
    return text.decode(), size << 16


_CONTIG = re.compile(r"^##contig=<ID=([^,>]+)(?:,.*?length=(\d+))?", re.MULTILINE)


def _cut(read_at: ReadAt, begin: int, end: int) -> list[Piece]:
    """The pieces of the virtual-offset range [begin, end): the part of its first block from
    ``begin`` and of its last up to ``end`` made again; whole blocks between them as stored."""
    first, within = begin >> 16, begin & 0xFFFF
    last, upto = end >> 16, end & 0xFFFF
    if first == last:
        block, _ = _block_at(read_at, first)
        return [Made(bgzf_blocks(block[within:upto]))]
    pieces: list[Piece] = []
    block, length = _block_at(read_at, first)
    if within:
        pieces.append(Made(bgzf_blocks(block[within:])))
        first += length
    if last > first:
        pieces.append(Stored(first, last - first))
    if upto:
        block, _ = _block_at(read_at, last)
        pieces.append(Made(bgzf_blocks(block[:upto])))
    return pieces


def vcf_slice(index: bytes, read_at: ReadAt, size: int, locus: GenomicRange | None) -> list[Piece]:
    """The pieces of a bgzipped VCF slice holding ``locus`` (None: only the header)."""
    header, first_record = _vcf_header(read_at, size)
    pieces: list[Piece] = [Made(bgzf_blocks(header.encode()))]
    if locus is not None:
        tabix = _tabix(index)
        lengths = {name: int(length) if length else 1 << 29 for name, length in _CONTIG.findall(header)}
        lengths.update({name: lengths.get(name, 1 << 29) for name in tabix.names})
        if locus.reference_name == UNMAPPED:
            raise SliceRefused("InvalidInput", "a VCF has no unplaced records ('*' is for reads)")
        start, end = _bounded(locus, lengths)
        if locus.reference_name in tabix.names:
            number = tabix.names.index(locus.reference_name)
            linear = tabix.linear[number]
            floor = linear[min(start >> _TBI_LINEAR_SHIFT, len(linear) - 1)] if linear else 0
            chunks = sorted(
                (max(b, floor, first_record), e)
                for bin_number in _bins(start, end)
                if bin_number != _TBI_PSEUDO_BIN
                for b, e in tabix.bins[number].get(bin_number, [])
                if e > floor
            )
            merged: list[tuple[int, int]] = []
            for b, e in chunks:
                if merged and b <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], e))
                else:
                    merged.append((b, e))
            for b, e in merged:
                pieces += _cut(read_at, b, e)
    pieces.append(Made(BGZF_EOF))
    return pieces
