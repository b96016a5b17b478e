"""The archive: fsspec URLs (file:// by default, s3:// through s3fs) written as streams.

A genome file is tens of gigabytes, so nothing here holds one in memory: bytes pass through
in chunks, and size, sha256 and md5 are computed in the same pass as the write. A write goes
to a temporary name and is committed by a rename only once complete, so a crash never
leaves a file that looks whole.

Speed: md5 is the slowest step (about 0.7 GB/s a core; sha256 with SHA-NI is twice that),
so it sets the floor. hashlib releases the GIL on large buffers, so md5, sha256 and the
write each run in their own thread (a :class:`Lane`), fed in order through a short queue:
md5 never waits for the disk (an occasional ``fdatasync``) nor for sha256, and the caller
waits only when a lane is several chunks behind. An async source is read ahead by one chunk
while the previous one is handed over (:func:`pump`). Chunks are a few MiB: large enough
that per-call overhead vanishes, small enough that memory stays flat whatever the file's
size (at most :data:`LANE_DEPTH` + 2 chunks are held).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

import fsspec
from fsspec import AbstractFileSystem

from shared.config import get_settings

CHUNK = 4 << 20
PARALLEL_MIN = 256 << 10
"""Below this a chunk is hashed in one thread: handing it over would cost more than it saves."""

SYNC_EVERY = 64 << 20
"""A local file being written is pushed to disk, and out of the page cache, every this many bytes."""

LANE_DEPTH = 3
"""Chunks a lane may have queued before its feeder waits: bounds memory, absorbs a slow sync."""


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


class Lane:
    """One worker thread applying a function to chunks in the order they were fed.

    :meth:`feed` returns at once unless :data:`LANE_DEPTH` chunks are already queued; a
    failure in the worker is raised by the next :meth:`feed` or :meth:`drain`, so an error
    (a full disk) is never lost. The thread ends when the lane is drained or forgotten.
    """

    def __init__(self, name: str, apply: Callable[[bytes], object]) -> None:
        self._apply = apply
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._queued: deque[Future[object]] = deque()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
            weakref.finalize(self, self._pool.shutdown, wait=False)
        return self._pool

    def feed(self, chunk: bytes) -> None:
        while self._queued and (self._queued[0].done() or len(self._queued) >= LANE_DEPTH):
            self._queued.popleft().result()
        self._queued.append(self._executor().submit(self._apply, chunk))

    def drain(self) -> None:
        """Wait until every chunk fed so far has been applied (re-raising its failure)."""
        failure: BaseException | None = None
        while self._queued:
            try:
                self._queued.popleft().result()
            except BaseException as exc:  # wait for the rest all the same: no thread left busy
                failure = failure or exc
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        if failure is not None:
            raise failure


class Digests:
    """Size, sha256 and md5 of a stream, each digest computed in its own thread."""

    def __init__(self) -> None:
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._lanes = [Lane("md5", self._md5.update), Lane("sha256", self._sha256.update)]
        self._then: Lane | None = None
        self._then_fn: Callable[[bytes], object] | None = None

    def update(self, chunk: bytes, then: Callable[[bytes], object] | None = None) -> None:
        """Hash ``chunk``, and feed it to ``then`` (e.g. a file write) in a third thread.

        Returns before the work is done; :meth:`drain` (or :meth:`hexdigests`) waits for it.
        ``then`` sees the chunks in order and must be the same callable on every call.
        """
        if then is not None and self._then_fn != then:  # bound methods are made anew per access
            if self._then is not None:
                self._then.drain()
            self._then_fn, self._then = then, Lane("write", then)
        self.size += len(chunk)
        for lane in self._lanes:
            lane.feed(chunk)
        if then is not None:
            assert self._then is not None
            self._then.feed(chunk)

    def drain(self) -> None:
        """Wait for every chunk to be hashed and handed to ``then``; raise the first failure."""
        lanes = [*self._lanes, *([self._then] if self._then is not None else [])]
        failure: BaseException | None = None
        for lane in lanes:
            try:
                lane.drain()
            except BaseException as exc:  # drain every lane before raising: no thread left busy
                failure = failure or exc
        if failure is not None:
            raise failure

    def hexdigests(self) -> tuple[str, str]:
        """(sha256, md5) of everything so far."""
        self.drain()
        return self._sha256.hexdigest(), self._md5.hexdigest()


class WriteBehind:
    """Writes to a file; a local one is pushed to disk and out of the page cache as it grows.

    Every :data:`SYNC_EVERY` bytes a local file is flushed, ``fdatasync``-ed and its written
    range dropped from the page cache. A stream of tens of gigabytes then neither evicts
    everything else from memory nor leaves gigabytes of dirty pages to a crash, and the
    kernel recycles the same pages instead of faulting in fresh ones (measured on the
    2-core VM: a sixth of the system time and about twice the write rate). Remote files
    (S3) have no descriptor and are written as they are.
    """

    def __init__(self, handle: IO[bytes], start: int = 0) -> None:
        self._handle = handle
        try:
            self._fd: int | None = handle.fileno()
        except (AttributeError, OSError):
            self._fd = None
        self._synced = start
        self._written = start

    def write(self, chunk: bytes) -> None:
        self._handle.write(chunk)
        self._written += len(chunk)
        if self._fd is not None and self._written - self._synced >= SYNC_EVERY:
            self.sync()

    def sync(self) -> None:
        """Make what was written durable (local files); called at every commit as well."""
        if self._fd is None or self._written == self._synced:
            return
        self._handle.flush()
        os.fdatasync(self._fd)
        os.posix_fadvise(self._fd, self._synced, self._written - self._synced, os.POSIX_FADV_DONTNEED)
        self._synced = self._written


class DigestingWriter:
    """Writes chunks to an open file while counting and hashing them."""

    def __init__(self, handle: IO[bytes], max_size: int | None = None) -> None:
        self._out = WriteBehind(handle)
        self._max_size = max_size
        self._digests = Digests()

    @property
    def size(self) -> int:
        return self._digests.size

    def write(self, chunk: bytes) -> None:
        if self._max_size is not None and self.size + len(chunk) > self._max_size:
            raise SizeLimitExceeded(f"more than {self._max_size} bytes")
        self._digests.update(chunk, self._out.write)

    def drain(self) -> None:
        """Wait until every chunk given to :meth:`write` is hashed and written."""
        self._digests.drain()

    def sync(self) -> None:
        self.drain()
        self._out.sync()

    def digests(self) -> tuple[str, str]:
        return self._digests.hexdigests()


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
        try:
            self.writer.sync()  # durable before the rename makes it look complete
            self._handle.close()
        except BaseException:  # a late write failed: leave no temporary file behind
            self.abort()
            raise
        self.fs.mv(self.tmp, self.path)
        sha256, md5 = self.writer.digests()
        return StoredObject(self.url, self.writer.size, sha256, md5)

    def abort(self) -> None:
        try:
            with contextlib.suppress(Exception):  # the write is thrown away; its failure was told
                self.writer.drain()
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


async def pump(chunks: AsyncIterable[bytes], sink: Callable[[bytes], None], chunk_size: int = CHUNK) -> int:
    """Feed an async source to a blocking ``sink`` in a thread; returns the bytes fed.

    Small network reads are gathered into ``chunk_size`` chunks, and the next chunk is read
    while the sink works on the previous one, so the network, the digests and the disk all
    progress at once; at most two chunks are held. If the source fails (a client cut off),
    everything it yielded still reaches the sink before the error is raised again, so a
    resumable upload keeps every byte that arrived. The sink is never used concurrently.
    """
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None] | None = None
    pieces: list[bytes] = []
    gathered = 0
    fed = 0
    source_error: Exception | None = None

    async def feed(chunk: bytes) -> None:
        nonlocal pending, fed
        if pending is not None:
            await pending  # a sink failure surfaces here
        pending = loop.run_in_executor(None, sink, chunk)
        fed += len(chunk)

    iterator = aiter(chunks)
    try:
        while True:
            try:
                piece = await anext(iterator)
            except StopAsyncIteration:
                break
            except Exception as exc:
                source_error = exc
                break
            pieces.append(piece)
            gathered += len(piece)
            if gathered >= chunk_size:
                chunk = b"".join(pieces)
                pieces.clear()
                gathered = 0
                await feed(chunk)
        if pieces:
            await feed(b"".join(pieces))
        if pending is not None:
            await pending
    finally:
        if pending is not None and not pending.done():
            await asyncio.wait([pending])  # never leave the sink busy behind our back
    if source_error is not None:
        raise source_error
    return fed


async def write_stream(url: str, chunks: AsyncIterable[bytes], max_size: int | None = None) -> StoredObject:
    """:func:`write_chunks` for an async source; hashing and I/O run off the event loop."""
    write = await asyncio.to_thread(AtomicWrite, url, max_size)
    try:
        await pump(chunks, write.writer.write)
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
