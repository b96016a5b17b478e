"""What a working copy is made of, whole or a slice, each a Crypt4GH file that the
department's secret key opens.

A whole file is the archive's header re-encrypted to the department's key, then the
archive's body as stored, each segment's tag checked on the way: the body is never
decrypted for sending (its segments are opened only to check their Poly1305 tags, and what
is sent is the stored ciphertext). A slice (htsget) is made of parts of the plaintext, so
it is encrypted again as it streams, under a data key of its own sealed to the department's
key; its plaintext exists only a megabyte at a time in the process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from services.access import slices
from services.access.objects import ArchivedObject
from shared.encryption import ArchiveKey, BodyDecryptor, BodyEncryptor, body_size, reencrypt_header
from shared.events import GenomicRange
from shared.headers import HeaderStore
from shared.storage import open_archived
from shared.tiers import ArchiveTiers

BATCH_SEGMENTS = 16
"""Segments read per step of a download (1 MiB): between steps the grant is looked at again."""
READ_AHEAD = 4
"""Batches a download's reader thread keeps ready ahead of the socket."""
GRANT_RECHECK_SECONDS = 0.5
"""How often a download in progress reads its grant again from the database, for a
revocation made on another replica (one made on this replica cuts the stream at once)."""


@dataclass(frozen=True)
class Delivery:
    """Where the service finds what a working copy needs, and how it signs its URLs."""

    headers: HeaderStore
    archive_key: Callable[[], ArchiveKey]
    url_secret: bytes
    url_minutes: int
    tiers: ArchiveTiers | None = None
    """Where bodies are now (a cold one is recalled before its copy goes); None: the archive's one tier."""


@dataclass
class WholeFile:
    """One whole-file working copy being sent: ``header`` first, then ``batches()``, each the
    bytes of up to :data:`BATCH_SEGMENTS` segments."""

    header: bytes
    body: BodyDecryptor
    size: int
    part: Literal["whole-file"] = "whole-file"

    def batches(self) -> Iterator[bytes]:
        """The body's stored segments, :data:`BATCH_SEGMENTS` at a time, each checked."""
        segments = self.body.sealed_segments()
        while True:
            batch = b"".join(s for _, s in zip(range(BATCH_SEGMENTS), segments, strict=False))
            if not batch:
                return
            yield batch

    def close(self) -> None:
        self.body.close()


def whole_file(found: ArchivedObject, delivery: Delivery, recipient: bytes) -> WholeFile:
    """Open the working copy of ``found`` for ``recipient`` (raises the encryption errors of a
    header that does not open, and storage errors of a body that cannot be read)."""
    key = delivery.archive_key()
    header = reencrypt_header(delivery.headers.read(found.url), key, recipient)
    body = open_archived(found.url, found.size, delivery.headers, key, delivery.tiers)
    return WholeFile(header, body, len(header) + body_size(found.size))


@dataclass
class Slice:
    """One htsget slice being sent: a fresh ``header`` sealed to the department's key, then
    ``batches()`` of the slice's plaintext encrypted as it is read."""

    header: bytes
    body: BodyDecryptor
    pieces: list[slices.Piece]
    encryptor: BodyEncryptor
    size: int
    part: Literal["slice"] = "slice"

    def batches(self) -> Iterator[bytes]:
        """The slice's segments, about :data:`BATCH_SEGMENTS` at a time."""
        for chunk in slices.plaintext(self.pieces, self._read_at, BATCH_SEGMENTS << 16):
            if sealed := self.encryptor.feed(chunk):
                yield b"".join(sealed)
        if last := self.encryptor.finish():
            yield b"".join(last)

    def _read_at(self, offset: int, length: int) -> bytes:
        return read_at(self.body, offset, length)

    def close(self) -> None:
        self.body.close()


def read_at(body: BodyDecryptor, offset: int, length: int) -> bytes:
    """``length`` plaintext bytes of ``body`` from ``offset`` (fewer only at its end)."""
    body.seek(offset)
    out = bytearray(length)
    view, got = memoryview(out), 0
    while got < length and (count := body.readinto(view[got:])):
        got += count
    return bytes(out[:got])


def slice_of(
    found: ArchivedObject,
    index: ArchivedObject,
    locus: GenomicRange | None,
    delivery: Delivery,
    recipient: bytes,
) -> Slice:
    """Open the htsget slice of ``found`` holding ``locus`` (None: its header alone), cut
    with ``index`` (its ``.crai`` or ``.tbi``), for ``recipient``. Raises
    :class:`slices.SliceRefused` for a range the file cannot give, and the errors of
    :func:`whole_file` for an archive that cannot be read."""
    key = delivery.archive_key()
    with open_archived(index.url, index.size, delivery.headers, key, delivery.tiers) as stored_index:
        index_bytes = io.BufferedReader(stored_index).read()
    body = open_archived(found.url, found.size, delivery.headers, key, delivery.tiers)
    try:
        cut = slices.cram_slice if index.name.endswith(".crai") else slices.vcf_slice
        pieces = cut(index_bytes, lambda offset, length: read_at(body, offset, length), found.size, locus)
        encryptor = BodyEncryptor(recipient)
        header = encryptor.header
        return Slice(header, body, pieces, encryptor, len(header) + body_size(slices.size_of(pieces)))
    except BaseException:
        body.close()
        raise


class ReadAhead:
    """A copy's batches read and checked by a thread of the download's own, up to
    :data:`READ_AHEAD` batches ahead of the one being sent.

    The event loop hashes and writes while the thread reads and checks tags (both release
    the GIL), so they take a core each. Handing each batch to a pool thread only when the
    last was taken left either side waiting on the other: measured in process on 512 MB, 1.5
    s a GB against 1.0 with the thread kept busy. One thread, so the generator is only ever
    advanced in order.
    """

    def __init__(self, batches: Iterator[bytes]) -> None:
        self._batches = batches
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="working-copy")
        self._ready = deque(self._read() for _ in range(READ_AHEAD))

    def _read(self) -> asyncio.Future[bytes | None]:
        return asyncio.wrap_future(self._pool.submit(next, self._batches, None))

    async def next(self) -> bytes | None:
        """The next batch, None at the end; raises what reading or checking it raised."""
        batch = await self._ready.popleft()
        if batch is not None:
            self._ready.append(self._read())
        return batch

    async def close(self) -> None:
        """Wait until the thread is done with the copy (its body can then be closed)."""
        for pending in self._ready:
            with contextlib.suppress(BaseException):
                await pending
        self._pool.shutdown(wait=False)
