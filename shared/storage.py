"""The archive: fsspec URLs (file:// by default, s3:// through s3fs) written as streams.

A genome file is tens of gigabytes, so nothing here holds one in memory: bytes pass through
in chunks, and size, sha256 and md5 are computed in the same pass as the write. A write goes
to a temporary name and is committed by a rename only once complete, so a crash never
leaves a file that looks whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from typing import IO, Any

import fsspec
from fsspec import AbstractFileSystem

from shared.config import get_settings

CHUNK = 1 << 20


class SizeLimitExceeded(Exception):
    """The stream is longer than it was allowed to be."""


@dataclass(frozen=True)
class StoredObject:
    url: str
    size: int
    sha256: str
    md5: str


def storage_options(url: str) -> dict[str, Any]:
    if url.startswith("s3://"):
        endpoint = get_settings().s3_endpoint_url
        return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}
    return {}


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem behind ``url`` and the path on it."""
    fs, path = fsspec.core.url_to_fs(url, **storage_options(url))
    return fs, path


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


class DigestingWriter:
    """Writes chunks to an open file while counting and hashing them."""

    def __init__(self, handle: IO[bytes], max_size: int | None = None) -> None:
        self._handle = handle
        self._max_size = max_size
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._max_size is not None and self.size > self._max_size:
            raise SizeLimitExceeded(f"more than {self._max_size} bytes")
        self._sha256.update(chunk)
        self._md5.update(chunk)
        self._handle.write(chunk)

    def digests(self) -> tuple[str, str]:
        return self._sha256.hexdigest(), self._md5.hexdigest()


class AtomicWrite:
    """A write to ``url`` under a temporary name, renamed into place by :meth:`commit`."""

    def __init__(self, url: str, max_size: int | None = None) -> None:
        self.url = url
        self.fs, self.path = filesystem(url)
        self.tmp = f"{self.path}.part-{uuid.uuid4().hex}"
        parent = self.path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        self._handle: IO[bytes] = self.fs.open(self.tmp, "wb")
        self.writer = DigestingWriter(self._handle, max_size)

    def commit(self) -> StoredObject:
        self._handle.close()
        self.fs.mv(self.tmp, self.path)
        sha256, md5 = self.writer.digests()
        return StoredObject(self.url, self.writer.size, sha256, md5)

    def abort(self) -> None:
        try:
            self._handle.close()
        finally:
            if self.fs.exists(self.tmp):
                self.fs.rm(self.tmp)


def write_chunks(url: str, chunks: Iterable[bytes], max_size: int | None = None) -> StoredObject:
    """Stream ``chunks`` into ``url`` atomically, hashing on the way."""
    write = AtomicWrite(url, max_size)
    try:
        for chunk in chunks:
            write.writer.write(chunk)
    except BaseException:
        write.abort()
        raise
    return write.commit()


async def write_stream(url: str, chunks: AsyncIterable[bytes], max_size: int | None = None) -> StoredObject:
    """:func:`write_chunks` for an async source; hashing and I/O run off the event loop."""
    write = await asyncio.to_thread(AtomicWrite, url, max_size)
    try:
        async for chunk in chunks:
            await asyncio.to_thread(write.writer.write, chunk)
    except BaseException:
        await asyncio.to_thread(write.abort)
        raise
    return await asyncio.to_thread(write.commit)


def read_chunks(url: str, chunk_size: int = CHUNK) -> Iterable[bytes]:
    """The bytes at ``url``, one chunk at a time."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def copy_into(src_url: str, dst_url: str, max_size: int | None = None) -> StoredObject:
    """Stream a file from an inbox (any fsspec URL) into the archive, hashing on the way."""
    return write_chunks(dst_url, read_chunks(src_url), max_size)


def local_path(url: str) -> str | None:
    """The path of a file:// URL, for tools (samtools, bwa) that need a real file."""
    return url[len("file://") :] if url.startswith("file://") else None
