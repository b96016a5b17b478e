"""Where the receiver puts bytes: the archive layout and resumable partial uploads.

Layout under ``GENOMHUB_STORE`` (any fsspec URL)::

    <store>/<region>/<sample_id>/<submission_id>/<file name>     complete files, never rewritten
    <store>/.incoming/<submission_id>/<file name>                 bytes still arriving

Nothing in the archive proper ever looks complete before it is: a local file in transit
lives only under ``.incoming`` and is moved into place once its last byte arrived and its
digests were checked; an S3 file in transit is an unfinished multipart upload, which no
listing or GET shows, completed in its place at its last byte (a file whose declared sha256
it then misses is removed before anything records it). Each PUT continues the file where what is stored ends; how the bytes are stored
depends on the store, behind one :class:`PartialUpload`.

Every file is stored encrypted (a Crypt4GH body, ``shared.storage.EncryptingSink``): a file
started at offset 0 gets a fresh data key, its header stored at once in the header store at
the ``.incoming`` URL, and every later PUT, on any replica, goes on under the data key that
header opens to with the archive key. What a file in transit holds is always whole 64 KiB
segments: a PUT's plaintext tail short of one is dropped (its ``Upload-Offset`` says so) and
only the file's last byte seals a short segment. At commit the header moves with the body.

- **Local** (``file://``): the partial file is itself the record of how much arrived. A PUT
  writes at the offset where it ends and is made durable when the request ends, even when
  the client went away mid-way; a receiver that dies mid-PUT leaves the prefix it wrote. The
  digests of a resumed file are rebuilt by decrypting the prefix back through the hashes; a
  torn segment past the prefix is cut off, and one a crash left unauthentic ends the prefix.
- **S3**: the file in transit is ONE multipart upload, created on its first whole part. Each
  PUT streams into parts of ``GENOMHUB_RECEIVER_S3_PART_SIZE`` (rounded up to whole cipher
  segments, so the parts stored end on a segment boundary); a part is recorded in the
  receiver's database (``state.SubmissionStore``, the part ledger) only once S3 acknowledged
  it, and how much arrived is the sum of the recorded parts. A PUT cut mid-part keeps its
  whole parts and throws away the tail (the answer's ``Upload-Offset`` says where to resume,
  possibly before what was sent); a resume, on any replica or after a restart, continues with
  the next part number. The last byte completes the upload where the file belongs (a
  re-upload of a file already complete goes to ``.incoming`` instead, so a complete file is
  never rewritten): no move follows, which on S3 would be a copy of the whole file. No part
  is a copy of an earlier object, so the file may be of any size (S3's UploadPartCopy stops
  at 5 GiB). An upload started over (a PUT at offset 0) or refused (too large) is aborted in
  S3, which frees its parts.

  S3 cannot read back the parts of an unfinished upload, and hashlib's state cannot be
  saved, so the digests of a file whose bytes came in several PUTs are computed by reading
  the completed object back once, decrypted: they cover exactly the bytes stored, at the cost of one
  read of the file (measured with ``bench/upload.py --store s3``). A file sent in one PUT is
  hashed on the way, as locally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Protocol, cast

from shared.encryption import (
    CIPHER_SEGMENT_SIZE,
    SEGMENT_SIZE,
    ArchiveKey,
    ArchiveKeyError,
    BodyDecryptor,
    BodyEncryptor,
    SegmentAuthenticationError,
    body_size,
    in_whole_segments,
    whole_segments_stored,
)
from shared.headers import HeaderStore, MissingHeader
from shared.paths import beneath
from shared.storage import (
    MIN_PART,
    ArchiveWriter,
    EncryptingSink,
    Intake,
    MultipartSink,
    MultipartUpload,
    NoSuchUpload,
    ReadInto,
    SourceFile,
    StoredObject,
    UploadedPart,
    abort_upload,
    filesystem,
    object_source,
    object_store,
    open_sink,
    part_size_for,
    verify_upload,
)

INCOMING = ".incoming"


class UploadRecords(Protocol):
    """The receiver's database as the record of S3 uploads in transit (``state.SubmissionStore``)."""

    def upload_in_transit(self, submission_id: str, name: str) -> MultipartUpload | None: ...

    def upload_started(self, submission_id: str, name: str, url: str, upload_id: str) -> None: ...

    def part_stored(self, upload_id: str, part: UploadedPart) -> None: ...

    def upload_ended(self, submission_id: str, name: str) -> None: ...


@dataclass(frozen=True)
class Layout:
    """The URLs of a submission's files in the archive at ``store``.

    Every URL is built by :func:`shared.paths.beneath`, so no id or file name, however it got
    past its own rules, can place a file outside the store or its region's folder.
    """

    store: str

    def final(self, region: str, sample_id: str, submission_id: str, name: str) -> str:
        return beneath(self.store, region, sample_id, submission_id, name)

    def partial(self, submission_id: str, name: str) -> str:
        return beneath(self.store, INCOMING, submission_id, name)


class OffsetMismatch(Exception):
    """The client's idea of how much arrived differs from the archive's."""

    def __init__(self, arrived: int) -> None:
        super().__init__(f"{arrived} bytes have arrived")
        self.arrived = arrived


def arrived(partial_url: str) -> int:
    """How many plaintext bytes of a local upload in transit are in the archive (0 when
    none): its whole segments, from which it resumes."""
    fs, path = filesystem(partial_url)
    try:
        return whole_segments_stored(int(fs.size(path)))
    except FileNotFoundError:
        return 0


def discard(url: str, headers: HeaderStore) -> None:
    """Remove a body and its header (the body first: a header alone is harmless)."""
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path)
    headers.remove(url)


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return bool(fs.exists(path))


@dataclass(frozen=True)
class FileParts:
    """One file's S3 upload as the database records it: the ledger its parts are written to."""

    records: UploadRecords
    submission_id: str
    name: str

    def in_transit(self) -> MultipartUpload | None:
        return self.records.upload_in_transit(self.submission_id, self.name)

    def upload_started(self, url: str, upload_id: str) -> None:
        self.records.upload_started(self.submission_id, self.name, url, upload_id)

    def part_stored(self, upload_id: str, part: UploadedPart) -> None:
        self.records.part_stored(upload_id, part)

    def upload_ended(self) -> None:
        self.records.upload_ended(self.submission_id, self.name)


class PartialUpload:
    """Continue a file in transit, encrypting and hashing what arrives; blocking, run in a thread.

    ``offset`` is where the client says its bytes start: 0 starts the file over under a fresh
    data key (its header stored at once, at ``partial_url`` in the header store), anything
    else must equal what has arrived (else :class:`OffsetMismatch`), which is always a whole
    number of segments: the body goes on under the data key its stored header opens to with
    the archive key, on whichever replica the PUT lands. Locally the stored prefix is then
    decrypted back through the hashes. On S3 (``parts`` given) the file's multipart upload is
    checked against S3's own list of its parts and continued, in parts of whole segments,
    ``part_size`` or more for a file (``total`` bytes) that would need more than S3's
    10,000; ``ends_file`` says this PUT brings the last byte, at which :meth:`close` seals
    the last, short segment and (S3) completes the upload: to ``target_url`` (the file's
    final place, so no copy follows, its header stored there first) when given, as the
    upload started, else to ``partial_url``.
    """

    def __init__(
        self,
        partial_url: str,
        offset: int,
        max_size: int,
        writer: ArchiveWriter,
        *,
        parts: FileParts | None = None,
        part_size: int = MIN_PART,
        total: int = 0,
        ends_file: bool = False,
        target_url: str | None = None,
    ) -> None:
        self.url = self._partial = partial_url
        self._writer = writer
        self.fs, self.path = filesystem(partial_url)
        self._ends_at = total if ends_file else None
        self._resumed = offset != 0
        self._completed = False
        self._closed = False
        self._multipart: MultipartSink | None = None
        if parts is None:
            self.intake = Intake(max_size)
            have = arrived(partial_url)
            if offset != 0 and offset != have:
                raise OffsetMismatch(have)
            try:
                encryptor = self._encryptor(offset)
            except MissingHeader:
                raise OffsetMismatch(0) from None
            if offset:
                os.truncate(self.path, body_size(offset))  # a torn segment after the prefix goes
                try:
                    with self.fs.open(self.path, "rb") as prefix:
                        self.intake.take(self._plaintext(encryptor.header, prefix, offset).readinto)
                except SegmentAuthenticationError as exc:
                    # A crash can leave a segment's length on disk without its bytes: the
                    # file goes on from the last segment that authenticates.
                    os.truncate(self.path, exc.segment * CIPHER_SEGMENT_SIZE)
                    raise OffsetMismatch(exc.segment * SEGMENT_SIZE) from None
                if self.intake.size != offset:  # the prefix changed under us: refuse, don't guess
                    raise OffsetMismatch(self.intake.size)
            self._sink = EncryptingSink(open_sink(self.fs, self.path, body_size(offset)), encryptor)
            return
        upload = parts.in_transit()
        have = whole_segments_stored(upload.size) if upload is not None else 0
        if offset != 0 and offset != have:
            raise OffsetMismatch(have)
        if upload is not None and offset == 0:  # started over: S3 frees the old parts
            abort_upload(upload.url, upload.upload_id)
            parts.upload_ended()
            upload = None
        if upload is not None:
            try:
                verify_upload(upload)
                encryptor = self._encryptor(offset)
            except (NoSuchUpload, MissingHeader):  # gone from S3 (completed by a receiver that
                abort_upload(upload.url, upload.upload_id)  # died, or aborted), or unreadable
                parts.upload_ended()
                raise OffsetMismatch(0) from None
        else:
            encryptor = self._encryptor(0)
        self.intake = Intake(max_size, counted=offset)
        part = in_whole_segments(part_size_for(body_size(total), part_size))
        self._multipart = MultipartSink(self.fs, target_url or partial_url, part, parts, upload)
        self._sink = EncryptingSink(self._multipart, encryptor)
        self.url = self._multipart.url
        self.path = filesystem(self.url)[1]

    def _encryptor(self, offset: int) -> BodyEncryptor:
        """A fresh data key for a file started over (its header stored before any byte), or
        the stored one of the file in transit (:class:`MissingHeader` if it has none)."""
        if offset == 0:
            encryptor = BodyEncryptor(self._writer.recipient)
            self._writer.headers.write(self._partial, encryptor.header)
            return encryptor
        header = self._writer.headers.read(self._partial)
        return BodyEncryptor.continuing(header, self._archive_key(), offset)

    def _archive_key(self) -> ArchiveKey:
        if self._writer.key is None:
            raise ArchiveKeyError("a resumed upload needs the archive key to open its stored header")
        return self._writer.key

    def _plaintext(self, header: bytes, body: BinaryIO, size: int) -> BodyDecryptor:
        return BodyDecryptor(header, body, self._archive_key(), size)

    @property
    def size(self) -> int:
        """Bytes of the file seen so far: stored, and an unsealed or unsent tail."""
        return self.intake.size

    @property
    def arrived(self) -> int:
        """Bytes of the file stored, from which a resume continues (call after :meth:`close`):
        whole segments, and the short last one once the file is complete."""
        if self._completed:
            return self.intake.size
        if self._multipart is not None:
            return whole_segments_stored(self._multipart.durable)
        return self._sink.stored

    def take(self, readinto: ReadInto) -> None:
        """Append the source's bytes; what it delivered before failing is kept (see ``Intake``)."""
        assert not self._closed, "take after close"
        self.intake.take(readinto, self._sink)

    def close(self) -> None:
        """Make what arrived durable (also after an interrupted request): whole segments, a
        tail short of one is dropped. At the file's last byte, seal its short last segment
        and, on S3, complete the upload, its header first where the object appears."""
        if self._closed:
            return
        self._closed = True
        sink = self._sink
        try:
            if self._ends_at is not None and sink.position == self._ends_at:
                sink.finish()
                if self._multipart is not None:
                    if self._multipart.url != self._partial:
                        self._writer.headers.write(self._multipart.url, sink.header)
                    self._multipart.finish()
                    if self._multipart.url != self._partial:
                        self._writer.headers.remove(self._partial)
                self._completed = True
            sink.sync()
        finally:
            sink.close()

    def result(self) -> StoredObject:
        """Size and digests of the whole file's plaintext (call after :meth:`close`).

        A file that came to S3 in several PUTs is read back once and decrypted: only the
        completed object holds the bytes the earlier PUTs stored (see the module's docstring).
        """
        if self._multipart is None or not self._resumed:
            sha256, md5 = self.intake.hexdigests()
            return StoredObject(self.url, self.size, sha256, md5)
        stored = Intake()
        with object_source(self.url) as whole:
            stored.take(
                self._plaintext(self._sink.header, cast(BinaryIO, SourceFile(whole)), self.size).readinto
            )
        if stored.size != self.size:
            raise OffsetMismatch(stored.size)
        sha256, md5 = stored.hexdigests()
        return StoredObject(self.url, stored.size, sha256, md5)


@dataclass(frozen=True)
class Transit:
    """Files in transit in one archive: opened for a PUT, measured, thrown away.

    Whether the store is local or S3 is decided here, once, so the API never asks.
    """

    layout: Layout
    records: UploadRecords
    part_size: int
    writer: ArchiveWriter

    def _parts(self, submission_id: str, name: str) -> FileParts | None:
        url = self.layout.partial(submission_id, name)
        return FileParts(self.records, submission_id, name) if object_store(url) else None

    def open(
        self,
        submission_id: str,
        name: str,
        offset: int,
        max_size: int,
        total: int,
        ends_file: bool,
        final_url: str | None,
    ) -> PartialUpload:
        """The file opened to continue at ``offset``; ``total`` is its size, as the PUT states it.

        On S3 an upload completes at ``final_url`` (the file's place, when it has none yet):
        an unfinished multipart upload is invisible, so the object appears there only whole,
        and no server-side copy of tens of gigabytes follows (a move on S3 is a copy).
        """
        url = self.layout.partial(submission_id, name)
        parts = self._parts(submission_id, name)
        return PartialUpload(
            url,
            offset,
            max_size,
            self.writer,
            parts=parts,
            part_size=self.part_size,
            total=total,
            ends_file=ends_file,
            target_url=final_url,
        )

    def arrived(self, submission_id: str, name: str) -> int:
        """How many bytes of the file are stored (0 when none)."""
        parts = self._parts(submission_id, name)
        if parts is None:
            return arrived(self.layout.partial(submission_id, name))
        upload = parts.in_transit()
        return whole_segments_stored(upload.size) if upload is not None else 0

    def discard(self, submission_id: str, name: str) -> None:
        """Throw the file in transit away: its S3 upload aborted, its partial object removed."""
        parts = self._parts(submission_id, name)
        url = self.layout.partial(submission_id, name)
        if parts is not None:
            upload = parts.in_transit()
            if upload is not None:
                abort_upload(upload.url, upload.upload_id)
                parts.upload_ended()
        discard(url, self.writer.headers)


def commit(partial_url: str, final_url: str, headers: HeaderStore) -> None:
    """Move a complete file from ``.incoming`` into its place in the archive, its header
    first (an S3 upload completed in its place already is left there, its header with it)."""
    if partial_url == final_url:
        return
    headers.write(final_url, headers.read(partial_url))
    fs, src = filesystem(partial_url)
    _, dst = filesystem(final_url)
    fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
    fs.mv(src, dst)
    headers.remove(partial_url)
