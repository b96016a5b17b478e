"""Getting at a file's bytes: a stream for our own parsers, a local path for htslib.

Files arrive as fsspec URLs. The FASTQ checks read a stream, so they work on any store with
flat memory. pysam (htslib) needs a path for CRAM, BAM and VCF: a file:// URL gives its path
directly; any other scheme is streamed down to a temporary file first.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from shared.storage import CHUNK, filesystem, local_path


def open_stream(url: str) -> IO[bytes]:
    fs, path = filesystem(url)
    handle: IO[bytes] = fs.open(path, "rb")
    return handle


def size_of(url: str) -> int:
    fs, path = filesystem(url)
    return int(fs.size(path))


def head(url: str, length: int = 1 << 16) -> bytes:
    with open_stream(url) as handle:
        return handle.read(length)


def tail(url: str, length: int) -> bytes:
    fs, path = filesystem(url)
    size = int(fs.size(path))
    with fs.open(path, "rb") as handle:
        handle.seek(max(0, size - length))
        data: bytes = handle.read(length)
        return data


@contextlib.contextmanager
def as_local_path(url: str, suffix: str = "") -> Iterator[Path]:
    """A local path holding the file at ``url`` for as long as the context lasts."""
    local = local_path(url)
    if local is not None:
        yield Path(local)
        return
    with tempfile.TemporaryDirectory(prefix="genomhub-validate-") as tmp:
        target = Path(tmp) / f"download{suffix}"
        with open_stream(url) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        yield target
