"""Where the receiver puts bytes: the archive layout and resumable partial uploads.

Layout under ``GENOMHUB_STORE`` (any fsspec URL)::

    <store>/<region>/<sample_id>/<submission_id>/<file name>     complete files, never rewritten
    <store>/.incoming/<submission_id>/<file name>                 bytes still arriving

A file in transit lives only under ``.incoming``, so nothing in the archive proper ever looks
complete before it is: it is moved into place once its last byte arrived and its digests
checked. The partial object is itself the record of how much arrived: each PUT appends to
it (locally a write at the offset where the file ends; on S3, s3fs's append mode starts a
multipart upload whose first part is a server-side copy of the existing object), and it is committed
when the request ends, even when the client went away mid-way, so a resumed PUT continues
from what is there. A receiver that dies mid-PUT leaves the prefix it had written (locally)
or the previous partial (S3: the unfinished multipart upload is never visible); either way
a prefix, which HEAD reports and a resume continues. The digests of a resumed file are
rebuilt by streaming the prefix back through the hashes: cheap next to the upload, and the
only way to be sure the digests cover the bytes actually stored.

Known limit: S3's UploadPartCopy takes at most 5 GiB, so on real S3 a partial larger than
that cannot be appended to; a resume then has to start over (the error says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.paths import beneath
from shared.storage import Intake, ReadInto, Sink, StoredObject, filesystem, open_sink

INCOMING = ".incoming"


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
    """How many bytes of an upload in transit are in the archive (0 when none)."""
    fs, path = filesystem(partial_url)
    try:
        return int(fs.size(path))
    except FileNotFoundError:
        return 0


def discard(url: str) -> None:
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path)


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return bool(fs.exists(path))


class PartialUpload:
    """Append to a file in transit, hashing everything it holds; blocking, run in a thread.

    ``offset`` is where the client says its bytes start: 0 starts the file over, anything
    else must equal what has arrived (else :class:`OffsetMismatch`), whose digests are then
    rebuilt from the stored prefix.
    """

    def __init__(self, partial_url: str, offset: int, max_size: int) -> None:
        self.url = partial_url
        self.fs, self.path = filesystem(partial_url)
        self.intake = Intake(max_size)
        have = arrived(partial_url)
        if offset != 0 and offset != have:
            raise OffsetMismatch(have)
        if offset:
            with self.fs.open(self.path, "rb") as prefix:
                self.intake.take(prefix.readinto)
            if self.intake.size != offset:  # the prefix changed under us: refuse, don't guess
                raise OffsetMismatch(self.intake.size)
        self._sink: Sink | None = open_sink(self.fs, self.path, offset)

    @property
    def size(self) -> int:
        return self.intake.size

    def take(self, readinto: ReadInto) -> None:
        """Append the source's bytes; what it delivered before failing is kept (see ``Intake``)."""
        assert self._sink is not None, "take after close"
        self.intake.take(readinto, self._sink)

    def close(self) -> None:
        """Make what arrived durable as the partial (also after an interrupted request)."""
        if self._sink is not None:
            sink, self._sink = self._sink, None
            try:
                sink.sync()
            finally:
                sink.close()

    def result(self) -> StoredObject:
        """Size and digests of the whole file so far (call after :meth:`close`)."""
        sha256, md5 = self.intake.hexdigests()
        return StoredObject(self.url, self.size, sha256, md5)


def commit(partial_url: str, final_url: str) -> None:
    """Move a complete file from ``.incoming`` into its place in the archive."""
    fs, src = filesystem(partial_url)
    _, dst = filesystem(final_url)
    fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
    fs.mv(src, dst)
