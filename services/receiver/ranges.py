"""Where a PUT's bytes belong in the file: ``Upload-Offset`` or ``Content-Range`` headers.

Pure parsing, so the rules are unit-tested without a server. A PUT with neither header
sends the whole file. ``Upload-Offset: N`` (as in the IETF resumable-uploads draft and tus)
or ``Content-Range: bytes N-*/*`` continues a file from byte N; ``Content-Range: bytes
N-M/T`` also states the file's total, so a client may send a file in several deliberate
pieces. Without a total, the body is taken to end the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ASCII digits only: \d and str.isdigit() also take "²", which int() then refuses (a 500), and
# "٣", which int() reads as 3.
_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+|\*)/([0-9]+|\*)")
_OFFSET = re.compile(r"[0-9]+")


class BadRange(ValueError):
    """The headers contradict themselves or the body's length."""


@dataclass(frozen=True)
class Placement:
    offset: int
    length: int
    total: int

    @property
    def ends_file(self) -> bool:
        return self.offset + self.length == self.total


def placement(upload_offset: str | None, content_range: str | None, content_length: int) -> Placement:
    """Where a body of ``content_length`` bytes goes, from the request's headers."""
    offset: int | None = None
    total: int | None = None
    if upload_offset is not None:
        if not _OFFSET.fullmatch(upload_offset.strip()):
            raise BadRange("Upload-Offset must be a non-negative integer")
        offset = int(upload_offset)
    if content_range is not None:
        match = _RANGE.fullmatch(content_range.strip())
        if match is None:
            raise BadRange("Content-Range must look like 'bytes N-M/T', 'bytes N-*/*' or 'bytes N-M/*'")
        start = int(match.group(1))
        if offset is not None and start != offset:
            raise BadRange("Upload-Offset and Content-Range disagree")
        offset = start
        if match.group(2) != "*":
            last = int(match.group(2))
            if last - start + 1 != content_length:
                raise BadRange("Content-Range does not match Content-Length")
        if match.group(3) != "*":
            total = int(match.group(3))
    offset = offset or 0
    if total is None:
        total = offset + content_length
    if offset + content_length > total:
        raise BadRange("the body runs past the file's stated total")
    return Placement(offset, content_length, total)
