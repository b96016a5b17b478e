"""The archive: fsspec URLs (file:// by default, s3:// through s3fs) written as streams.

A genome file is tens of gigabytes, so nothing here holds one in memory, and every byte is
counted and hashed (sha256 and md5) in the same pass as it is written. A file is written
under a temporary name and committed by a rename only once complete, so a crash never leaves
a file that looks whole.

How bytes move (:class:`Intake`): a source (a socket or a file) reads straight into one of
:data:`RING` fixed buffers, and each filled buffer goes to three threads at once, md5, sha256
and the write, then back to the source once all three are done with it. What is archived is
encrypted in the write thread (:class:`EncryptingSink`, Crypt4GH segments into buffers of
its own, written to disk by a further thread while the next chunk is sealed), so the digests
stay the plaintext's and no plaintext reaches the archive. No chunk is copied
or allocated on the way, and memory is the same for 1 MB as for 100 GB. md5 is the slowest
step (about 0.75 GB/s a core; sha256 with SHA-NI is more than twice that) and runs on a core
of its own (hashlib releases the GIL on large buffers), so a stream moves at close to md5's
own rate when the rest is cheap: that is why the rest is kept cheap.

A local file is written with ``O_DIRECT`` where the filesystem allows it (:class:`LocalFile`):
the bytes go from the buffer to the disk without a copy into the page cache. Measured on the
2-core VM for 2 GB: 0.09 CPU-seconds against 0.6-0.8 through the page cache, which is a
third of a core while md5 needs one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import mmap
import os
import posixpath
import stat
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

import fsspec
import fsspec.asyn
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from shared.config import ArchiveSettings
from shared.encryption import (
    CRYPT4GH_MAGIC,
    SEGMENT_SIZE,
    ArchiveKey,
    BodyDecryptor,
    BodyEncryptor,
    HeaderKeyMismatch,
    archive_key_paths,
    body_size,
    check_archive_key,
    read_public_key,
    split_header,
)
from shared.headers import HeaderStore

CHUNK = 64 * SEGMENT_SIZE
"""Bytes moved at a time (4 MiB, 64 Crypt4GH segments): large enough that per-call costs
vanish, small enough to hold a few, and whole segments so that the cipher splits no chunk."""

RING = 4
"""Buffers a stream cycles through: one filling while up to three are hashed and written."""

ALIGN = 4096
"""What ``O_DIRECT`` needs of a write's length, file offset and memory address."""

WRITES_AHEAD = 2
"""Sealed buffers an :class:`EncryptingSink` has being written while it seals the next."""

SYNC_EVERY = 64 << 20
"""A local file written through the page cache is pushed to disk, and out of the cache, this often."""

ReadInto = Callable[[memoryview], int]
"""A source: fills the start of a buffer and returns how much it filled, 0 at the end."""


class SizeLimitExceeded(Exception):
    """The stream is longer than it was allowed to be."""


class Readable(Protocol):
    """A file opened for reading, as :func:`open_inside` hands it over."""

    def readinto(self, buffer: memoryview, /) -> int: ...

    def close(self) -> None: ...


class OutsideRoot(Exception):
    """A file named under a root folder is really somewhere else (a symlink, ``..``), or not a file."""


@dataclass(frozen=True)
class StoredObject:
    url: str
    size: int
    sha256: str
    md5: str


def use_s3_endpoint(endpoint: str | None) -> None:
    """Send every ``s3://`` URL of this process to ``endpoint`` (moto, on-premise S3).

    The wiring calls this once from the archive's settings; it is fsspec's own per-protocol
    default (``fsspec.config.conf``), so the archive I/O below takes no endpoint argument
    and every filesystem fsspec opens for ``s3`` gets it."""
    if endpoint:
        fsspec.config.conf["s3"] = {"client_kwargs": {"endpoint_url": endpoint}}
    else:
        fsspec.config.conf.pop("s3", None)


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem behind ``url`` and the path on it."""
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


class Sink(Protocol):
    """Where a stream's bytes are written, in order; ``position`` is the next byte's offset."""

    position: int

    def write(self, chunk: memoryview) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...


class LocalFile:
    """A local file, written with ``O_DIRECT`` where the filesystem and the chunk allow it.

    A direct write must start on an aligned offset and be a whole number of blocks long. The
    :class:`Intake` hands over chunks from page-aligned buffers that end on multiples of
    :data:`CHUNK` in the file, so all but a resumed upload's first chunk and a file's last are
    direct; those two go through the page cache (the flag is switched per write, which Linux
    allows). A filesystem that refuses ``O_DIRECT`` (tmpfs before Linux 6.6) gets every write
    through the page cache, where every :data:`SYNC_EVERY` bytes the file is ``fdatasync``-ed
    and dropped from the cache, so a stream of tens of gigabytes neither evicts everything
    else nor leaves gigabytes of dirty pages to a crash.
    """

    def __init__(self, path: str, offset: int = 0) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (0 if offset else os.O_TRUNC)
        try:
            self._fd = os.open(path, flags | os.O_DIRECT, 0o666)
            self._direct_allowed = True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._fd = os.open(path, flags, 0o666)
            self._direct_allowed = False
        self._close = weakref.finalize(self, os.close, self._fd)  # a forgotten file is still closed
        self._direct = self._direct_allowed
        self.position = offset
        self._synced = offset
        self._cached = 0

    def _set_direct(self, direct: bool) -> None:
        if direct != self._direct:
            status = fcntl.fcntl(self._fd, fcntl.F_GETFL)
            fcntl.fcntl(self._fd, fcntl.F_SETFL, status | os.O_DIRECT if direct else status & ~os.O_DIRECT)
            self._direct = direct

    def write(self, chunk: memoryview) -> None:
        while chunk:
            direct = self._direct_allowed and self.position % ALIGN == 0 and len(chunk) % ALIGN == 0
            if direct and self._cached:
                # A resumed file's cached head first: a direct write past it moves the end of
                # the file, and a host crash must not leave the head as a hole of zeros.
                self.sync()
            self._set_direct(direct)
            try:
                written = os.pwrite(self._fd, chunk, self.position)
            except OSError as exc:
                if not (direct and exc.errno == errno.EINVAL):
                    raise
                self._direct_allowed = False  # the filesystem took the flag but not the write
                continue
            if not direct:
                self._cached += written
            self.position += written
            chunk = chunk[written:]
        if self._cached >= SYNC_EVERY:
            self.sync()

    def sync(self) -> None:
        """Make what was written durable; called at every commit as well."""
        if self.position == self._synced:
            return
        os.fdatasync(self._fd)
        if self._cached:
            os.posix_fadvise(self._fd, self._synced, self.position - self._synced, os.POSIX_FADV_DONTNEED)
        self._synced = self.position
        self._cached = 0

    def close(self) -> None:
        self._close()  # once only: a second call does nothing


class RemoteFile:
    """An fsspec file (an S3 object): written as it comes; it appears whole when closed."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.position = 0

    def write(self, chunk: memoryview) -> None:
        self._handle.write(chunk)
        self.position += len(chunk)

    def sync(self) -> None:
        """Nothing to do: an object store makes the object durable at :meth:`close`."""

    def close(self) -> None:
        self._handle.close()


def open_sink(fs: AbstractFileSystem, path: str, offset: int = 0) -> Sink:
    """``path`` opened for writing: from the start, or (a local file) appended to at ``offset``.

    An object is never appended to: s3fs's append mode copies the object into the first part
    of a multipart upload, which S3 limits to 5 GiB. A resumable object is a
    :class:`MultipartSink` instead.
    """
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        return LocalFile(path, offset)
    if offset:
        raise ValueError("an object store is not appended to; resume through a MultipartSink")
    return RemoteFile(fs.open(path, "wb"))


def object_store(url: str) -> bool:
    """Whether ``url`` names an object in an object store (S3), which is written in parts."""
    return not isinstance(filesystem(url)[0], LocalFileSystem)


MIN_PART = 5 << 20
"""S3's smallest part but the last."""

MAX_PARTS = 10_000
"""S3's most parts in one multipart upload."""


@dataclass(frozen=True)
class UploadedPart:
    """A part S3 acknowledged: its number in the upload, its length and S3's ETag for it."""

    number: int
    size: int
    etag: str


@dataclass(frozen=True)
class MultipartUpload:
    """An S3 multipart upload in progress (to the object ``url``) and the parts of it S3 has
    acknowledged, in order."""

    url: str
    upload_id: str
    parts: tuple[UploadedPart, ...] = ()

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)


class PartLedger(Protocol):
    """Where one file's multipart upload is recorded as it goes (the receiver's database).

    The ledger, not the object store, answers how much of an object in transit arrived: S3
    cannot read back the parts of an unfinished upload. Each call is made only after S3
    acknowledged what it records, so the ledger never claims a byte S3 does not hold.
    """

    def upload_started(self, url: str, upload_id: str) -> None: ...

    def part_stored(self, upload_id: str, part: UploadedPart) -> None: ...

    def upload_ended(self) -> None: ...


class NoSuchUpload(Exception):
    """The object store no longer knows the multipart upload the ledger names (completed or aborted)."""


def part_size_for(total: int, least: int) -> int:
    """The part size of an S3 upload of ``total`` bytes: ``least``, or more (whole MiB) when
    ``least`` would need more than S3's :data:`MAX_PARTS` parts."""
    needed = -(-total // MAX_PARTS)
    return max(least, MIN_PART, -(-needed // (1 << 20)) << 20)


class _PartBody(io.RawIOBase):
    """A part's bytes as the seekable file botocore wants, read straight out of the part buffer.

    botocore takes bytes or a file, not a memoryview; a file over the buffer lets it send (and
    re-send on a retry) a part without a copy of tens of megabytes.
    """

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), len(self._view) - self._at)
        buffer[:n] = self._view[self._at : self._at + n]
        self._at += n
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._at, os.SEEK_END: len(self._view)}[whence]
        self._at = base + offset
        return self._at

    def tell(self) -> int:
        return self._at

    def __len__(self) -> int:
        return len(self._view)


class MultipartSink:
    """An S3 object written as parts of one multipart upload, resumable at any size.

    Bytes fill a part buffer of ``part_size``; a full buffer is sent as the next part
    (UploadPart) and recorded in the ledger only once S3 acknowledged it. :attr:`durable` is
    what the recorded parts hold: after a stream cut mid-part the buffered tail is thrown
    away at :meth:`close` (S3 takes no short part but the last), and a resume starts at the
    next part. :meth:`finish` sends the tail as the last part and completes the upload, so the
    object appears, whole, only at its last byte. No part is ever a copy of another object, so
    nothing here meets UploadPartCopy's 5 GiB limit. The upload itself is created with the
    first part, so a PUT that delivers less than a part leaves nothing in S3.

    One buffer, sent from the write lane: while a part is in flight the md5 and sha256 lanes
    go on with the chunks already read (:class:`Intake`), and a second buffer would overlap
    only the copy into this one, at the price of a part's memory per upload.
    """

    def __init__(
        self,
        fs: AbstractFileSystem,
        url: str,
        part_size: int,
        ledger: PartLedger,
        upload: MultipartUpload | None = None,
    ) -> None:
        if part_size < MIN_PART:
            raise ValueError(f"S3 parts but the last are at least {MIN_PART} bytes, not {part_size}")
        self._fs = fs
        self.url = upload.url if upload is not None else url
        self._bucket, _, self._key = filesystem(self.url)[1].partition("/")
        self._ledger = ledger
        self._upload = upload
        self._buffer = bytearray(part_size)
        self._filled = 0
        self.durable = upload.size if upload is not None else 0
        self.position = self.durable

    def _call(self, operation: str, **params: Any) -> Any:
        return self._fs.call_s3(operation, Bucket=self._bucket, Key=self._key, **params)

    def write(self, chunk: memoryview) -> None:
        while chunk:
            n = min(len(chunk), len(self._buffer) - self._filled)
            self._buffer[self._filled : self._filled + n] = chunk[:n]
            self._filled += n
            self.position += n
            chunk = chunk[n:]
            if self._filled == len(self._buffer):
                self._send(memoryview(self._buffer))
                self._filled = 0

    def _send(self, body: memoryview) -> None:
        """Send the next part and record it once S3 acknowledged it."""
        if self._upload is None:
            upload_id = self._call("create_multipart_upload")["UploadId"]
            self._ledger.upload_started(self.url, upload_id)
            self._upload = MultipartUpload(self.url, upload_id)
        number = len(self._upload.parts) + 1
        if number > MAX_PARTS:
            raise SizeLimitExceeded(f"more than {MAX_PARTS} parts of {len(self._buffer)} bytes")
        try:
            sent = self._call(
                "upload_part", UploadId=self._upload.upload_id, PartNumber=number, Body=_PartBody(body)
            )
        except FileNotFoundError as exc:  # s3fs's word for NoSuchUpload
            raise NoSuchUpload(self._upload.upload_id) from exc
        part = UploadedPart(number, len(body), sent["ETag"])
        self._ledger.part_stored(self._upload.upload_id, part)
        self._upload = MultipartUpload(self.url, self._upload.upload_id, (*self._upload.parts, part))
        self.durable += part.size

    def sync(self) -> None:
        """Nothing to do: a part is durable when S3 acknowledges it; a tail cannot be a part."""

    def finish(self) -> None:
        """Send the tail as the last part and complete the upload: the object appears whole."""
        tail = memoryview(self._buffer)[: self._filled]
        self._filled = 0
        if self._upload is None:
            # Less than one part in all: one PUT is the whole object, no upload to track.
            self._fs.pipe_file(f"{self._bucket}/{self._key}", bytes(tail))
            self.durable = len(tail)
            return
        if tail:
            self._send(tail)
        parts = [{"PartNumber": p.number, "ETag": p.etag} for p in self._upload.parts]
        try:
            self._call(
                "complete_multipart_upload", UploadId=self._upload.upload_id, MultipartUpload={"Parts": parts}
            )
        except FileNotFoundError as exc:
            raise NoSuchUpload(self._upload.upload_id) from exc
        self._fs.invalidate_cache(f"{self._bucket}/{self._key}")
        self._ledger.upload_ended()

    def close(self) -> None:
        """Drop the buffered tail: it is not :attr:`durable`, and a resume sends it again."""
        self.position = self.durable
        self._filled = 0


async def _fill_from(body: Any, view: memoryview) -> int:
    filled = 0
    while filled < len(view):
        chunk = await body.read(len(view) - filled)
        if not chunk:
            break
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return filled


@contextlib.contextmanager
def object_source(url: str) -> Iterator[ReadInto]:
    """An S3 object as a source for :class:`Intake`, streamed through one GET.

    Not ``fs.open``: its reads are ranged GETs of one block each, which a server that reads
    the whole object to answer a range (moto) pays for again and again, and its read-ahead
    holds 50 MiB; here the bytes go from the one response into the intake's buffers.
    """
    fs, path = filesystem(url)
    bucket, _, key = path.partition("/")
    body = fs.call_s3("get_object", Bucket=bucket, Key=key)["Body"]
    try:
        yield lambda view: int(fsspec.asyn.sync(fs.loop, _fill_from, body, view))
    finally:
        body.close()


def verify_upload(upload: MultipartUpload) -> None:
    """Check that S3 still holds the upload and every part the ledger records (else :class:`NoSuchUpload`).

    S3 may hold one part more than the ledger (acknowledged, then the receiver died before
    recording it); that part is sent again under its number, which replaces it.
    """
    fs, path = filesystem(upload.url)
    bucket, _, key = path.partition("/")
    held: dict[int, str] = {}
    marker = 0
    while True:
        try:
            listed = fs.call_s3(
                "list_parts", Bucket=bucket, Key=key, UploadId=upload.upload_id, PartNumberMarker=marker
            )
        except FileNotFoundError as exc:
            raise NoSuchUpload(upload.upload_id) from exc
        held.update({p["PartNumber"]: p["ETag"] for p in listed.get("Parts", [])})
        if not listed.get("IsTruncated"):
            break
        marker = int(listed["NextPartNumberMarker"])
    if any(held.get(part.number) != part.etag for part in upload.parts):
        raise NoSuchUpload(upload.upload_id)


def abort_upload(url: str, upload_id: str) -> None:
    """Abort a multipart upload: S3 frees its parts (an upload already gone is no error)."""
    fs, path = filesystem(url)
    bucket, _, key = path.partition("/")
    with contextlib.suppress(FileNotFoundError):
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)


class Lane:
    """One worker thread applying a function to chunks in the order they were fed.

    After a chunk fails, the chunks fed behind it are skipped: a write after a failed write
    would land where the failed one belonged. Only the failed chunk's future raises.

    A lane off the critical path is ``yielding``: its thread lowers its own priority (Linux
    ``nice`` is per thread; lowering it needs no privilege), so on a busy machine the md5
    lane, which sets the pace, is the last to wait for a core. A yielding lane still gets
    every idle cycle. Measured with ``bench/upload.py``: 0.80-0.91 of ``md5sum`` without
    (eight runs), 0.88-1.04 with (ten runs).
    """

    YIELDING_NICE = 10

    def __init__(self, name: str, apply: Callable[[memoryview], object], *, yielding: bool = False) -> None:
        self._apply = apply
        self._failed = False
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=_yield_cpu if yielding else None
        )

    def _run(self, chunk: memoryview) -> None:
        if self._failed:
            return
        try:
            self._apply(chunk)
        except BaseException:
            self._failed = True
            raise

    def feed(self, chunk: memoryview) -> Future[None]:
        return self._pool.submit(self._run, chunk)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _yield_cpu() -> None:
    with contextlib.suppress(OSError):  # a sandbox may forbid it: slower, never wrong
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), Lane.YIELDING_NICE)


def _fill(readinto: ReadInto, view: memoryview) -> tuple[int, Exception | None]:
    """Fill ``view`` from the source until full or at its end; a failure comes back with the count."""
    filled = 0
    while filled < len(view):
        try:
            got = readinto(view[filled:])
        except Exception as exc:  # the bytes before the failure are still the caller's to keep
            return filled, exc
        if not got:
            break
        filled += got
    return filled, None


class Intake:
    """Bytes taken from sources into sinks, counted and hashed (md5 and sha256) on the way.

    One intake can :meth:`take` several sources in turn (a resumed upload first re-reads the
    prefix it has, unwritten, then the client's bytes), and its digests cover them all.
    ``counted`` bytes stored before, and not taken here, count towards ``max_size`` only.
    """

    def __init__(self, max_size: int | None = None, counted: int = 0) -> None:
        self.size = counted
        self.max_size = max_size
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()

    def take(self, readinto: ReadInto, sink: Sink | None = None) -> None:
        """Read the source to its end, hashing every byte and writing it to ``sink``.

        Returns once every byte read is hashed and written. When the source fails (a client
        cut off), the bytes it delivered are still hashed and written before its error is
        raised, so a resumable upload keeps every byte that arrived. A failed write (a full
        disk) is raised, whatever else happened; nothing is written after it, the reading
        stops within :data:`RING` chunks, and :attr:`size` then counts bytes the file never
        got (the file itself tells what it holds).
        """
        lanes = [Lane("md5", self._md5.update), Lane("sha256", self._sha256.update, yielding=True)]
        if sink is not None:
            lanes.append(Lane("write", sink.write, yielding=True))
        free = [memoryview(mmap.mmap(-1, CHUNK)) for _ in range(RING)]  # page-aligned, for O_DIRECT
        in_flight: deque[tuple[memoryview, list[Future[None]]]] = deque()
        at = sink.position if sink is not None else 0
        try:
            while True:
                if not free:
                    buffer, done = in_flight.popleft()
                    for lane_done in done:
                        lane_done.result()
                    free.append(buffer)
                buffer = free.pop()
                want = CHUNK - at % CHUNK  # chunks end on CHUNK boundaries in the file
                filled, failure = _fill(readinto, buffer[:want])
                if self.max_size is not None and self.size + filled > self.max_size:
                    raise SizeLimitExceeded(f"more than {self.max_size} bytes")
                if filled:
                    chunk = buffer[:filled]
                    in_flight.append((buffer, [lane.feed(chunk) for lane in lanes]))
                    self.size += filled
                    at += filled
                else:
                    free.append(buffer)
                if failure is not None:
                    raise failure
                if filled < want:
                    return
        finally:
            lane_failure: BaseException | None = None
            for _, done in in_flight:
                for lane_done in done:
                    try:
                        lane_done.result()
                    except BaseException as exc:  # wait for every lane all the same: none left busy
                        lane_failure = lane_failure or exc
            for lane in lanes:
                lane.close()
            if lane_failure is not None:
                raise lane_failure  # a lost write outranks whatever else ended the stream

    def hexdigests(self) -> tuple[str, str]:
        """(sha256, md5) of everything taken so far."""
        return self._sha256.hexdigest(), self._md5.hexdigest()


class EncryptingSink:
    """The write lane's cipher: plaintext chunks in, Crypt4GH body segments out to ``inner``.

    What enters the archive is encrypted in the pass that hashes it (design.md section 13):
    the write lane seals each chunk's whole segments into a preallocated, page-aligned
    cipher buffer, so no chunk allocates. A cipher chunk is 28 bytes a segment longer than
    its plaintext, no multiple of 4096, so a buffer keeps back the few sealed bytes past the
    last 4096 boundary of the file and carries them ahead of the next chunk's: all but a
    body's first and last writes stay aligned for ``O_DIRECT``.

    A sealed buffer is written by a lane of its own (:data:`WRITES_AHEAD` buffers in flight)
    while the next chunk is sealed. Sealing and writing one after the other in one thread
    would add the cipher's time to the disk's, and the disk alone is about as slow as md5
    here (fresh blocks of this VM's disk take 450-620 MB/s, ``dd oflag=direct``): measured in
    process on 1 GB, hashing, sealing and writing took 3.3-3.9 s in one lane against 2.6 s for
    hashing and a plaintext write. Plaintext buffers go back to the :class:`Intake` once
    sealed, not once written. A failed write is raised by the next write that needs its
    buffer, or at :meth:`finish`, :meth:`sync` or :meth:`close`, and nothing is written after it.

    A plaintext tail short of a segment waits in a buffer of its own: :meth:`finish` seals it
    as the body's last, short segment; without it (an interrupted upload) :meth:`close`
    drops it, so a body in transit always ends on a segment boundary and a resume goes on
    under the same data key (:attr:`stored` is the plaintext it holds). ``position`` is
    plaintext, as :class:`Intake` counts.
    """

    def __init__(self, inner: Sink, encryptor: BodyEncryptor) -> None:
        self._inner = inner
        self._encryptor = encryptor
        self.stored = encryptor.plaintext_size
        self.position = self.stored
        capacity = body_size(CHUNK + SEGMENT_SIZE) + ALIGN
        # page-aligned, for O_DIRECT: one being sealed, the others being written
        self._free = [memoryview(mmap.mmap(-1, capacity)) for _ in range(WRITES_AHEAD + 1)]
        self._out = self._free.pop()
        self._sealed = 0
        self._writing: deque[tuple[memoryview, Future[None]]] = deque()
        self._disk = Lane("disk", inner.write)
        self._submitted = inner.position  # where ``inner`` ends once every write sent is done
        self._failure: BaseException | None = None  # a failed write: every later call raises it
        self._tail = memoryview(bytearray(SEGMENT_SIZE))
        self._tail_size = 0

    @property
    def header(self) -> bytes:
        return self._encryptor.header

    def write(self, chunk: memoryview) -> None:
        self._refuse_after_failure()
        while chunk:
            if self._tail_size:
                take = min(SEGMENT_SIZE - self._tail_size, len(chunk))
                self._tail[self._tail_size : self._tail_size + take] = chunk[:take]
                self._tail_size += take
                self.position += take
                chunk = chunk[take:]
                if self._tail_size < SEGMENT_SIZE:
                    return
                self._seal(self._tail)
                self._tail_size = 0
            piece = chunk[: CHUNK - CHUNK % SEGMENT_SIZE]
            whole = len(piece) - len(piece) % SEGMENT_SIZE
            if whole:
                self._seal(piece[:whole])
            rest = piece[whole:]
            self._tail[: len(rest)] = rest
            self._tail_size = len(rest)
            self.position += len(piece)
            chunk = chunk[len(piece) :]
            self._drain(aligned=True)

    def _seal(self, plaintext: memoryview) -> None:
        if self._sealed + body_size(len(plaintext)) > len(self._out):
            self._drain(aligned=False)
        self._sealed += self._encryptor.seal_into(plaintext, self._out[self._sealed :])
        self.stored += len(plaintext)

    def _drain(self, *, aligned: bool) -> None:
        """Send what is sealed to be written; ``aligned``: only up to the file's last 4096
        boundary, the rest carried into the next buffer."""
        count = self._sealed
        if aligned:
            count -= (self._submitted + count) % ALIGN
        if count <= 0:
            return
        sent = self._out
        self._writing.append((sent, self._disk.feed(sent[:count])))
        self._submitted += count
        if self._free:
            self._out = self._free.pop()
        else:
            self._out, oldest = self._writing.popleft()
            self._outcome(oldest)
        left = self._sealed - count
        self._out[:left] = sent[count : self._sealed]  # the disk lane reads only sent[:count]
        self._sealed = left

    def _outcome(self, done: Future[None]) -> None:
        try:
            done.result()
        except BaseException as exc:
            self._failure = self._failure or exc
            raise

    def _refuse_after_failure(self) -> None:
        """After a failed write the body has a hole where that write belonged, so nothing
        more is sealed, written or finished: the file must never look complete."""
        if self._failure is not None:
            raise self._failure

    def _written(self) -> None:
        """Wait for every write sent; the first that failed is raised once all are done."""
        while self._writing:
            buffer, done = self._writing.popleft()
            with contextlib.suppress(BaseException):  # wait for the rest all the same: none left busy
                self._outcome(done)
            self._free.append(buffer)
        self._refuse_after_failure()

    def finish(self) -> None:
        """Seal the plaintext's short last segment, if any, and write everything sealed."""
        self._refuse_after_failure()
        if self._tail_size:
            self._seal(self._tail[: self._tail_size])
            self._tail_size = 0
        self._drain(aligned=False)
        self._written()

    def sync(self) -> None:
        """Write every sealed byte and make it durable (a short tail stays unsealed)."""
        self._refuse_after_failure()
        self._drain(aligned=False)
        self._written()
        self._inner.sync()

    def close(self) -> None:
        """Close the body once its writes are done; a tail short of a segment and not
        finished is dropped. A failed write is raised here only if nothing raised it yet."""
        told = self._failure is not None
        self.position = self.stored
        self._tail_size = 0
        try:
            self._written()
        except BaseException:
            if not told:
                raise
        finally:
            self._disk.close()
            self._inner.close()


@dataclass(frozen=True)
class ArchiveWriter:
    """What writing into the archive needs: the archive's public key, that every new body's
    fresh data key is encrypted to, and the header store the header goes to. ``key``, the
    archive key itself, only where files encrypted to NGC arrive to be opened on intake (the
    receiver's inboxes)."""

    recipient: bytes
    headers: HeaderStore
    key: ArchiveKey | None = field(default=None, repr=False)

    @classmethod
    def of(cls, settings: ArchiveSettings, key: ArchiveKey | None = None) -> ArchiveWriter:
        """The configured archive's writer; its public key read (and checked) now, so a
        service without a usable key stops at start rather than at its first file."""
        recipient = key.public if key is not None else read_public_key(archive_key_paths(settings.key)[1])
        return cls(recipient, HeaderStore.of(settings), key)


class AtomicWrite:
    """A write to ``url`` under a temporary name, renamed into place by :meth:`commit`.

    With a ``writer``, the bytes taken are plaintext, encrypted on the way
    (:class:`EncryptingSink`) under a fresh data key; the header is stored before the rename,
    because a header without its body is harmless and a body without its header unreadable.
    Without one, the bytes are a body sealed already (a tier move copies a body as it is,
    its header staying where it is) and are stored unchanged.
    """

    def __init__(self, url: str, writer: ArchiveWriter | None, max_size: int | None = None) -> None:
        self.url = url
        self.writer = writer
        self.fs, self.path = filesystem(url)
        self.tmp = f"{self.path}.part-{uuid.uuid4().hex}"
        self.intake = Intake(max_size)
        inner = open_sink(self.fs, self.tmp)
        self._cipher = EncryptingSink(inner, BodyEncryptor(writer.recipient)) if writer is not None else None
        self._sink: Sink = self._cipher if self._cipher is not None else inner

    def take(self, readinto: ReadInto) -> None:
        self.intake.take(readinto, self._sink)

    def commit(self) -> StoredObject:
        try:
            if self._cipher is not None:
                self._cipher.finish()
            self._sink.sync()  # durable before the rename makes it look complete
            self._sink.close()
            if self._cipher is not None and self.writer is not None:
                self.writer.headers.write(self.url, self._cipher.header)
        except BaseException:  # a late write failed: leave no temporary file behind
            self.abort()
            raise
        self.fs.mv(self.tmp, self.path)
        sha256, md5 = self.intake.hexdigests()
        return StoredObject(self.url, self.intake.size, sha256, md5)

    def abort(self) -> None:
        try:
            with contextlib.suppress(Exception):  # the write is thrown away; its failure was told
                self._sink.close()
        finally:
            if self.fs.exists(self.tmp):
                self.fs.rm(self.tmp)


def _inside(path: str, root: str) -> bool:
    return path != root and os.path.commonpath([path, root]) == root


def open_inside(url: str, root: str) -> Readable:
    """``url`` opened for reading, if the file it really is lies under the folder ``root``.

    Both are fsspec URLs of one filesystem. A local name is resolved as the kernel resolves
    it, every symlink of the way followed (the root's own included), and the file is refused
    unless that real location is under the root's real location. The check is repeated on
    the opened descriptor itself (``/proc/self/fd``), so a link swapped in between the check
    and the open is caught too; only regular files are read (a FIFO or a device is refused,
    and opened without blocking), and only with one name: a hard link into another region's
    inbox has no real location to check, so a file with several names is refused. An object store has no links: the key, normalised, must
    be under the root's prefix and equal to what was asked for.
    """
    fs, path = filesystem(url)
    root_fs, root_path = filesystem(root)
    if type(fs) is not type(root_fs):
        raise OutsideRoot("is not on the inbox's filesystem")
    if not isinstance(fs, LocalFileSystem):
        key, prefix = posixpath.normpath(path), posixpath.normpath(root_path.rstrip("/"))
        if key != path or not key.startswith(prefix + "/"):
            raise OutsideRoot("does not name an object under the inbox's prefix")
        handle: Readable = fs.open(path, "rb")
        return handle
    real_root = os.path.realpath(root_path)
    if not _inside(os.path.realpath(path), real_root):
        raise OutsideRoot("resolves outside the region's inbox (a symlink or '..')")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
        if not _inside(opened, real_root):
            raise OutsideRoot("resolves outside the region's inbox (a symlink or '..')")
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise OutsideRoot("is not a regular file")
        if status.st_nlink > 1:  # a hard link has no "real" location: any of its names is one
            raise OutsideRoot("has other hard links (it may be another folder's file); copy it in instead")
        os.set_blocking(fd, True)
        return open(fd, "rb", buffering=0, closefd=True)
    except BaseException:
        os.close(fd)
        raise


class SourceFile(io.RawIOBase):
    """A source as the file object a :class:`BodyDecryptor` reads; ``prefix``, bytes read
    from it already (to look for Crypt4GH's magic word), comes first."""

    def __init__(self, readinto: ReadInto, prefix: bytes = b"") -> None:
        super().__init__()
        self._prefix = memoryview(prefix)
        self._readinto = readinto

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            count = min(len(buffer), len(self._prefix))
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        return self._readinto(memoryview(buffer).cast("B"))


def plaintext_source(readinto: ReadInto, key: ArchiveKey | None) -> ReadInto:
    """``readinto``'s bytes as they arrive, or, for a Crypt4GH file (encrypted to NGC's
    archive key by the ``crypt4gh`` command line, say), its plaintext: the header opened with
    ``key`` and every segment authenticated as it streams. So a region may encrypt a file
    before it leaves the hospital, and the archive still stores it under a data key of its
    own and records the plaintext's digests, which the region's declared ones are checked
    against."""
    magic = bytearray(len(CRYPT4GH_MAGIC))
    filled, failure = _fill(readinto, memoryview(magic))
    if failure is not None:
        raise failure
    whole = SourceFile(readinto, bytes(magic[:filled]))
    if bytes(magic[:filled]) != CRYPT4GH_MAGIC:
        return whole.readinto
    if key is None:
        raise HeaderKeyMismatch("a Crypt4GH file arrived where no archive key is at hand to open it")
    encrypted = io.BufferedReader(whole, SEGMENT_SIZE)
    decryptor = BodyDecryptor(split_header(encrypted), encrypted, key)
    return decryptor.readinto


def copy_into(
    src_url: str,
    dst_url: str,
    writer: ArchiveWriter,
    max_size: int | None = None,
    *,
    inside: str | None = None,
) -> StoredObject:
    """Stream a file from an inbox (any fsspec URL) into the archive, encrypting and hashing
    on the way; a Crypt4GH file is decrypted first (:func:`plaintext_source`), so the digests
    are its plaintext's and it is stored under a fresh data key like any other.

    With ``inside`` (the inbox's URL) the source must really be in that folder
    (:func:`open_inside`), else :class:`OutsideRoot`.
    """
    if inside is not None:
        opened = open_inside(src_url, inside)
    else:
        fs, path = filesystem(src_url)
        opened = fs.open(path, "rb")
    with contextlib.closing(opened) as source:
        plaintext = plaintext_source(source.readinto, writer.key)
        write = AtomicWrite(dst_url, writer, max_size)
        try:
            write.take(plaintext)
        except BaseException:
            write.abort()
            raise
    return write.commit()


def read_chunks(url: str, chunk_size: int = CHUNK) -> Iterable[bytes]:
    """The bytes at ``url``, one chunk at a time."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def local_path(url: str) -> str | None:
    """The path of a file:// URL, for tools (samtools, bwa) that need a real file."""
    return url[len("file://") :] if url.startswith("file://") else None


class BodyLocator(Protocol):
    """Where an archived body's bytes are now (:class:`shared.tiers.ArchiveTiers`): the
    archive moves bodies between tiers, while every event names a body by its intake URL."""

    def locate(self, url: str) -> str:
        """The URL to read the body named ``url`` from now; raises what keeps it unreadable
        (:class:`shared.tiers.NeedsRecall` for a body on tape that is not staged)."""
        ...


def open_archived(
    url: str,
    plaintext_size: int | None,
    headers: HeaderStore,
    key: ArchiveKey,
    tiers: BodyLocator | None = None,
) -> BodyDecryptor:
    """The plaintext of the archived file at ``url``, decrypted as it streams.

    The one way any service reads an archived file's bytes (the validator, the harmoniser,
    the access service, replays, the demo): the body is read from the archive, its header
    from the header store, and every 64 KiB segment is authenticated before a byte of it is
    handed out. ``plaintext_size`` is the size the archive recorded (the ``file-received``
    event's), so a body cut short or run on is refused as well as a corrupted one, and no
    plaintext is ever written anywhere by reading. Close the result (or use it in ``with``);
    it closes the body. ``None`` is only for a body whose size nothing recorded (a check of
    the whole archive meets them): its segments are still authenticated, its length is not.

    With ``tiers`` the body is read from whichever tier holds it now (a body on tape that no
    recall staged raises :class:`shared.tiers.NeedsRecall` before anything is read); its
    header stays keyed by ``url``, which a move never changes.
    """
    header = headers.read(url)
    fs, path = filesystem(tiers.locate(url) if tiers is not None else url)
    body = fs.open(path, "rb")
    try:
        return BodyDecryptor(header, body, key, plaintext_size, close_body=True)
    except BaseException:
        body.close()
        raise


@dataclass(frozen=True)
class ArchiveReader:
    """What a service needs to read archived plaintext: the header store and the archive key.

    Picklable, so that a worker process (the validator's pool) is handed it once at start."""

    headers: HeaderStore
    key: ArchiveKey
    tiers: BodyLocator | None = None
    """Where bodies are now; None reads every body at its intake URL (an archive of one tier)."""

    @classmethod
    def of(
        cls, settings: ArchiveSettings, key: ArchiveKey | None = None, tiers: BodyLocator | None = None
    ) -> ArchiveReader:
        """The configured reader with ``key`` (a service's ``Service.archive_key``, checked at
        its start), else the configured key loaded now (:class:`~shared.encryption.ArchiveKeyError`)."""
        return cls(
            HeaderStore.of(settings), key if key is not None else check_archive_key(settings.key), tiers
        )

    def open(self, url: str, plaintext_size: int) -> BodyDecryptor:
        return open_archived(url, plaintext_size, self.headers, self.key, self.tiers)

    def copy_to(self, url: str, plaintext_size: int, target: Path) -> None:
        """The plaintext written to ``target`` (mode 0600), for a tool that must seek a real file.

        Every byte is authenticated before it is written; on any failure the partial copy is
        removed, so no unchecked or half-written plaintext is left for a tool to read."""
        try:
            with self.open(url, plaintext_size) as reader, _private_file(target) as out:
                for segment in reader.segments():
                    out.write(segment)
        except BaseException:
            target.unlink(missing_ok=True)
            raise


def _private_file(path: Path) -> BinaryIO:
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb")


def seal(
    url: str, chunks: Iterable[bytes | bytearray | memoryview], headers: HeaderStore, recipient: bytes
) -> int:
    """Archives ``chunks`` at ``url`` as the receiver archives a file (the one write path,
    :class:`~shared.storage.AtomicWrite` with a writer): a Crypt4GH body under a fresh data
    key, its header in ``headers``. Returns the plaintext size, which a reader is given back."""
    pending = iter(chunks)
    left = memoryview(b"")

    def readinto(buffer: memoryview) -> int:
        nonlocal left
        while not left:
            chunk = next(pending, None)
            if chunk is None:
                return 0
            left = memoryview(chunk).cast("B")
        count = min(len(buffer), len(left))
        buffer[:count] = left[:count]
        left = left[count:]
        return count

    fs, path = filesystem(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    write = AtomicWrite(url, ArchiveWriter(recipient, headers))
    try:
        write.take(readinto)
    except BaseException:
        write.abort()
        raise
    return write.commit().size
