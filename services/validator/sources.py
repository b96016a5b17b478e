"""Getting at a file's bytes: a stream for our own parsers, a local path for htslib.

A file to check is a :data:`Source`: a plain URL (``genomhub validate`` on an operator's
files, which are not in the archive) is read as it is; an :class:`ArchivedFile` is a
Crypt4GH body in the archive, read through :func:`shared.storage.open_archived` with the
plaintext size the archive recorded, every segment authenticated before a byte of it is
used. A failure to decrypt is raised as an :class:`~shared.encryption.EncryptionError`,
which the checks turn into the file's ``archive.unreadable`` problem.

The FASTQ and SPRING-parameter checks read a stream, so they work on any store with flat
memory. htslib needs a path. Where it reads once from start to end (``spring -d``, whose
``tar -x`` streams), :func:`as_fifo` gives it a named pipe that a thread decrypts into:
nothing is written. CRAM, BAM and VCF are opened several times and seeked (the end-of-file
checks, the container walk that cuts a CRAM into parts decoded side by side, the VCF's text
scan beside htslib's), which a pipe cannot serve, so :func:`as_local_path` decrypts them into
a private temporary folder removed when the check ends: one sequential write of the file,
small against decoding it (``bench/validate.py`` measures both paths).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shared.encryption import SEGMENT_SIZE
from shared.storage import CHUNK, ArchiveReader, filesystem, local_path, use_s3_endpoint


@dataclass(frozen=True)
class ArchivedFile:
    """A file in the archive and its plaintext size as ``file-received`` recorded it."""

    url: str
    size: int


Source = str | ArchivedFile
"""A plain URL is read as it is; an archived file is decrypted as it is read."""

_archive: ArchiveReader | None = None


def use_archive(reader: ArchiveReader | None) -> None:
    """Read this process's archived files with ``reader`` (its header store and key).

    Set once per process, like the S3 endpoint: by the service at start and by every worker
    process's initializer, so that the key is handed to a worker once, not with each file."""
    global _archive
    _archive = reader


def use_storage(s3_endpoint: str | None, reader: ArchiveReader | None) -> None:
    """A worker process's initializer: the archive's endpoint and its reader."""
    use_s3_endpoint(s3_endpoint)
    use_archive(reader)


def archive_reader() -> ArchiveReader:
    if _archive is None:
        raise RuntimeError("an archived file is to be read, but this process was given no archive key")
    return _archive


def url_of(source: Source) -> str:
    return source.url if isinstance(source, ArchivedFile) else source


def open_stream(source: Source) -> IO[bytes]:
    if isinstance(source, ArchivedFile):
        return io.BufferedReader(archive_reader().open(source.url, source.size), SEGMENT_SIZE)
    fs, path = filesystem(source)
    handle: IO[bytes] = fs.open(path, "rb")
    return handle


def size_of(source: Source) -> int:
    """The plaintext size: for an archived file the recorded one, never its body's."""
    if isinstance(source, ArchivedFile):
        return source.size
    fs, path = filesystem(source)
    return int(fs.size(path))


def head(source: Source, length: int = 1 << 16) -> bytes:
    with open_stream(source) as handle:
        return handle.read(length)


def tail(source: Source, length: int) -> bytes:
    """The last ``length`` bytes; an archived body seeks to the segment that holds them."""
    size = size_of(source)
    with open_stream(source) as handle:
        handle.seek(max(0, size - length))
        data: bytes = handle.read(length)
        return data


@contextlib.contextmanager
def as_local_path(source: Source, suffix: str = "") -> Iterator[Path]:
    """A local path holding the file's plaintext for as long as the context lasts.

    A local plain file is its own path; anything else is copied (an archived file decrypted)
    into a private temporary folder, removed when the context ends whatever happens."""
    local = None if isinstance(source, ArchivedFile) else local_path(source)
    if local is not None:
        yield Path(local)
        return
    with tempfile.TemporaryDirectory(prefix="genomhub-validate-") as tmp:
        target = Path(tmp) / f"download{suffix}"
        if isinstance(source, ArchivedFile):
            archive_reader().copy_to(source.url, source.size, target)
        else:
            with open_stream(source) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        yield target


@contextlib.contextmanager
def as_fifo(source: Source, suffix: str = "") -> Iterator[Path]:
    """A path a tool reads once from start to end: an archived file comes through a named
    pipe that a thread decrypts into, so no plaintext touches a disk.

    A decryption failure ends the pipe early (the tool sees an end of file) and is raised
    when the context ends, so whatever the tool made of the bytes it got is not taken for
    the file's. A tool that stops reading, or never opens the pipe, leaves no thread behind.
    """
    if not isinstance(source, ArchivedFile):
        with as_local_path(source, suffix) as path:
            yield path
        return
    reader = archive_reader()
    with tempfile.TemporaryDirectory(prefix="genomhub-validate-") as tmp:  # mode 0700
        fifo = Path(tmp) / f"plaintext{suffix}"
        os.mkfifo(fifo, 0o600)
        failure: list[BaseException] = []

        def pump() -> None:
            try:
                # The pipe first: a body that cannot even be opened still ends the tool's read.
                with open(fifo, "wb", buffering=0) as pipe, reader.open(source.url, source.size) as body:
                    for segment in body.segments():
                        pipe.write(segment)
            except BrokenPipeError:
                pass  # the tool stopped reading: its own outcome says why
            except BaseException as exc:
                failure.append(exc)

        writer = threading.Thread(target=pump, name="fifo-decrypt", daemon=True)
        writer.start()
        try:
            yield fifo
        finally:
            # Unblock a writer still waiting for a reader to open the pipe, or for room in it:
            # a read end opened and closed here leaves it a broken pipe.
            while writer.is_alive():
                with contextlib.suppress(OSError):
                    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
                writer.join(0.05)
            if failure:  # outranks the tool's own failure on the bytes it did not get
                raise failure[0]
