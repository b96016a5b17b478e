"""The archive's tiers: where a body's bytes can be, and what reading them costs.

A body moves between tiers byte for byte: it is a Crypt4GH body whose header lives apart in
the header store under the file's path relative to the archive root, so a move never needs
the key and never touches the header. What proves a copy is the digest of the stored bytes
(sha256 of the body as stored), computed as the bytes stream and confirmed by the tier.

Hot and warm tiers are plain fsspec folders or buckets, readable at once. The cold tier is
tape, behind one small port (:class:`ColdTier`) with one provider per technology: S3's
archive storage classes on a tape gateway (:class:`S3ColdTier`), and a folder that makes a
read wait for a simulated recall (:class:`FolderColdTier`), the embedded default.

Every reader of an archived body (the validator, the harmoniser's inputs, the access
service's working copies, replays) finds it through :class:`ArchiveTiers`: a body is named
by its intake URL on the hot tier for ever (events carry that URL, the header store keys
its header by the path beneath it), and :meth:`ArchiveTiers.locate` says where its bytes
are now. A body on tape that is not staged is :class:`NeedsRecall`, never a wrong read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from shared.config import TierSettings
from shared.envelope import RefusedEvent
from shared.paths import beneath, inside
from shared.storage import CHUNK, AtomicWrite, Readable, filesystem

TierName = Literal["hot", "warm", "cold"]
TIERS: tuple[TierName, ...] = ("hot", "warm", "cold")
"""From the fastest down: a file cools towards the end of this tuple."""

Clock = Callable[[], float]
"""Seconds since the epoch; tests pass a fake one."""


class NotStaged(Exception):
    """A cold body was asked for before its recall made it readable."""


class NeedsRecall(Exception):
    """A body is on the cold tier alone and not staged: it can be read once a recall has
    staged it. Not a fault of the body (nothing about it is wrong): whoever needs it asks
    the archive for a recall and comes back on ``file-staged``."""

    def __init__(self, path: str, state: RecallState) -> None:
        doing = "a recall is under way" if state == "recalling" else "no recall has staged it"
        super().__init__(f"{path} is on tape (the cold tier) and {doing}: it needs a recall to be read")
        self.path = path
        self.state: RecallState = state

    def __reduce__(self) -> tuple[type[NeedsRecall], tuple[str, RecallState]]:
        return NeedsRecall, (self.path, self.state)  # raised in a worker, re-raised whole here


class TierError(Exception):
    """The tier refused or lost a body (a failed recall, a copy that does not verify)."""


@dataclass(frozen=True)
class Stored:
    """A body on a tier: its bytes' size and sha256, as read back or as the tier confirms."""

    size: int
    sha256: str


RecallState = Literal["offline", "recalling", "staged"]


@dataclass(frozen=True)
class Residence:
    """Whether a cold body can be read now: ``offline`` (on tape only), ``recalling`` (a recall
    under way), ``staged`` (readable until ``expires``, seconds since the epoch)."""

    state: RecallState
    expires: float | None = None


def _stream_into(source: Readable, sink: Callable[[memoryview], None]) -> Stored:
    """Every byte of ``source`` handed to ``sink`` in chunks, counted and hashed on the way."""
    digest, size = hashlib.sha256(), 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while filled := source.readinto(view):
        chunk = view[:filled]
        digest.update(chunk)
        sink(chunk)
        size += filled
    return Stored(size, digest.hexdigest())


def digest_of(readable: Readable) -> Stored:
    """The size and sha256 of a stream, read to its end."""
    with contextlib.closing(readable):
        return _stream_into(readable, lambda _chunk: None)


class Tier(Protocol):
    """What a move needs of any tier."""

    name: TierName

    def exists(self, path: str) -> bool: ...

    def open(self, path: str) -> Readable:
        """The body at ``path`` to read (cold: only once staged, else :class:`NotStaged`)."""
        ...

    def store(self, path: str, source: Readable) -> Stored:
        """Write the body from ``source`` at ``path`` as one whole (never half-visible) and
        return the digest of the stored bytes as the tier confirms it."""
        ...

    def remove(self, path: str) -> None: ...

    def discard_partial(self, path: str) -> None:
        """Remove whatever an interrupted :meth:`store` of ``path`` left that is not the body."""
        ...


class ColdTier(Tier, Protocol):
    """Tape: a body is written once and read only after a recall."""

    def url_of(self, path: str) -> str:
        """The fsspec URL of the body at ``path`` (readable only while it is staged)."""
        ...

    def residence(self, path: str) -> Residence: ...

    def recall(self, path: str, pin_seconds: float) -> Residence:
        """Start a recall (none twice: one under way is left to run) and say where it stands."""
        ...


class FolderTier:
    """A hot or warm tier: an fsspec folder (or bucket prefix) readable at once."""

    def __init__(self, name: TierName, url: str) -> None:
        self.name = name
        self.url = url.rstrip("/")

    def _url(self, path: str) -> str:
        return beneath(self.url, *path.split("/"))

    def url_of(self, path: str) -> str:
        """The fsspec URL the body at ``path`` has on this tier."""
        return self._url(path)

    def exists(self, path: str) -> bool:
        fs, full = filesystem(self._url(path))
        return bool(fs.exists(full))

    def _read(self, path: str) -> Readable:
        fs, full = filesystem(self._url(path))
        handle: Readable = fs.open(full, "rb")
        return handle

    def open(self, path: str) -> Readable:
        return self._read(path)

    def store(self, path: str, source: Readable) -> Stored:
        write = AtomicWrite(self._url(path), None)  # a sealed body, copied as it is
        try:
            write.take(source.readinto)
        except BaseException:
            write.abort()
            raise
        written = write.commit()
        stored = digest_of(self._read(path))  # what the tier holds, read back, not what was sent
        if (stored.size, stored.sha256) != (written.size, written.sha256):
            raise TierError(f"{self.name}: {path} reads back other bytes than were written")
        return stored

    def remove(self, path: str) -> None:
        fs, full = filesystem(self._url(path))
        if fs.exists(full):
            fs.rm(full)

    def discard_partial(self, path: str) -> None:
        fs, full = filesystem(self._url(path))
        folder, name = full.rsplit("/", 1)
        if not fs.exists(folder):
            return
        for left in fs.ls(folder, detail=False):
            if str(left).rsplit("/", 1)[-1].startswith(f"{name}.part-"):
                fs.rm(left)


@dataclass
class _Recall:
    """A folder tier's recall as persisted beside the body: requested, given a drive, done."""

    requested: float
    pin_seconds: float
    started: float | None = None
    staged: float | None = None


class FolderColdTier(FolderTier):
    """A folder as tape: a body is readable only once a recall staged it.

    A recall waits for one of ``drives`` drives, holds it ``delay`` seconds, then the body is
    readable for its pin. Each recall is a small JSON file under ``.recalls/`` beside the
    bodies, so a restarted service knows the recalls under way and none is requested twice.
    """

    def __init__(self, url: str, *, delay: float, drives: int, clock: Clock = time.time) -> None:
        super().__init__("cold", url)
        self.delay, self.drives, self.clock = delay, drives, clock

    def _ticket(self, path: str) -> str:
        return beneath(self.url, ".recalls", *path.split("/")) + ".json"

    def _read_ticket(self, path: str) -> _Recall | None:
        fs, full = filesystem(self._ticket(path))
        if not fs.exists(full):
            return None
        with fs.open(full, "rb") as handle:
            return _Recall(**json.loads(handle.read()))

    def _write_ticket(self, path: str, recall: _Recall) -> None:
        fs, full = filesystem(self._ticket(path))
        fs.makedirs(full.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(full + ".tmp", "wb") as handle:
            handle.write(json.dumps(asdict(recall)).encode())
        fs.mv(full + ".tmp", full)

    def _tickets(self) -> Iterator[tuple[str, _Recall]]:
        fs, root = filesystem(beneath(self.url, ".recalls"))
        if not fs.exists(root):
            return
        for name in sorted(fs.find(root)):
            if str(name).endswith(".json"):
                path = str(name)[len(root) + 1 : -len(".json")]
                ticket = self._read_ticket(path)
                if ticket is not None:
                    yield path, ticket

    def _advance(self) -> None:
        """Bring every recall up to the clock: finished ones staged, free drives given out in
        the order the recalls were asked for."""
        now = self.clock()
        waiting, busy = [], 0
        for path, ticket in self._tickets():
            if ticket.started is not None and ticket.staged is None:
                if now >= ticket.started + self.delay:
                    ticket.staged = ticket.started + self.delay
                    self._write_ticket(path, ticket)
                else:
                    busy += 1
            elif ticket.started is None:
                waiting.append((ticket.requested, path, ticket))
        for _requested, path, ticket in sorted(waiting)[: max(0, self.drives - busy)]:
            ticket.started = now
            if self.delay == 0:
                ticket.staged = now
            self._write_ticket(path, ticket)

    def residence(self, path: str) -> Residence:
        self._advance()
        ticket = self._read_ticket(path)
        if ticket is None:
            return Residence("offline")
        if ticket.staged is None:
            return Residence("recalling")
        expires = ticket.staged + ticket.pin_seconds
        if self.clock() >= expires:
            return Residence("offline")
        return Residence("staged", expires)

    def recall(self, path: str, pin_seconds: float) -> Residence:
        if not self.exists(path):
            raise TierError(f"cold: no body at {path}")
        if self.residence(path).state == "offline":
            self._write_ticket(path, _Recall(requested=self.clock(), pin_seconds=pin_seconds))
        return self.residence(path)

    def open(self, path: str) -> Readable:
        if self.residence(path).state != "staged":
            raise NotStaged(f"cold: {path} is on tape; recall it first")
        return self._read(path)

    def remove(self, path: str) -> None:
        super().remove(path)
        fs, full = filesystem(self._ticket(path))
        if fs.exists(full):
            fs.rm(full)


_RESTORE = re.compile(r'ongoing-request="(true|false)"(?:,\s*expiry-date="([^"]+)")?')


def _md5_etag(part_digests: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: md5 of its parts' md5s, a dash, the part count."""
    return f'"{hashlib.md5(b"".join(part_digests)).hexdigest()}-{len(part_digests)}"'


class S3ColdTier:
    """A tape gateway behind S3: bodies PUT in an archive storage class (GLACIER or
    DEEP_ARCHIVE), unreadable (``InvalidObjectState``) until ``RestoreObject`` recalled them.

    A body streams as a multipart upload, every part hashed on the way; the object's ETag
    (md5 of the parts' md5s) is how the gateway confirms it holds those bytes, since a cold
    object cannot be read back to check. The sha256 is that of the stream sent, which was
    itself read from a verified copy.
    """

    name: TierName = "cold"

    def __init__(self, url: str, *, storage_class: str, part_size: int = 8 << 20) -> None:
        self.url = url.rstrip("/")
        self.storage_class = storage_class
        self.part_size = part_size
        self.fs, root = filesystem(self.url)
        self.bucket, _, self.prefix = root.partition("/")

    def _key(self, path: str) -> str:
        return beneath(f"s3://{self.bucket}/{self.prefix}".rstrip("/"), *path.split("/"))[
            len(f"s3://{self.bucket}/") :
        ]

    def _call(self, operation: str, **params: Any) -> Any:
        return self.fs.call_s3(operation, Bucket=self.bucket, **params)

    def _head(self, path: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._call("head_object", Key=self._key(path))
        except FileNotFoundError:
            return None
        return head

    def exists(self, path: str) -> bool:
        return self._head(path) is not None

    def url_of(self, path: str) -> str:
        return f"s3://{self.bucket}/{self._key(path)}"

    def store(self, path: str, source: Readable) -> Stored:
        key = self._key(path)
        upload = self._call("create_multipart_upload", Key=key, StorageClass=self.storage_class)["UploadId"]
        parts: list[dict[str, Any]] = []
        md5s: list[bytes] = []
        pending = bytearray()

        def send(final: bool) -> None:
            while len(pending) >= self.part_size or (final and (pending or not parts)):
                body = bytes(pending[: self.part_size])
                del pending[: self.part_size]
                number = len(parts) + 1
                answer = self._call("upload_part", Key=key, UploadId=upload, PartNumber=number, Body=body)
                md5s.append(hashlib.md5(body).digest())
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})

        def take(chunk: memoryview) -> None:
            pending.extend(chunk)
            send(final=False)

        try:
            sent = _stream_into(source, take)
            send(final=True)
            self._call(
                "complete_multipart_upload", Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):  # the upload is abandoned; the failure was told
                self._call("abort_multipart_upload", Key=key, UploadId=upload)
            raise
        head = self._head(path)
        if head is None or head.get("ETag") != _md5_etag(md5s) or head.get("ContentLength") != sent.size:
            raise TierError(f"cold: the gateway does not confirm the bytes of {path}")
        if head.get("StorageClass") != self.storage_class:
            raise TierError(
                f"cold: {path} was stored as {head.get('StorageClass')}, not {self.storage_class}"
            )
        return sent

    def residence(self, path: str) -> Residence:
        head = self._head(path)
        if head is None:
            raise TierError(f"cold: no body at {path}")
        match = _RESTORE.search(head.get("Restore", ""))
        if match is None:
            return Residence("offline")
        if match.group(1) == "true":
            return Residence("recalling")
        expiry = match.group(2)
        expires = (
            datetime.strptime(expiry, "%a, %d %b %Y %H:%M:%S %Z").replace(tzinfo=UTC).timestamp()
            if expiry
            else None
        )
        if expires is not None and expires <= time.time():
            return Residence("offline")
        return Residence("staged", expires)

    def recall(self, path: str, pin_seconds: float) -> Residence:
        days = max(1, round(pin_seconds / 86400))
        try:
            self._call("restore_object", Key=self._key(path), RestoreRequest={"Days": days})
        except Exception as exc:  # botocore's ClientError, wrapped or not by s3fs
            if "RestoreAlreadyInProgress" not in str(exc):
                raise TierError(f"cold: the gateway refused the recall of {path}: {exc}") from exc
        return self.residence(path)

    def open(self, path: str) -> Readable:
        if self.residence(path).state != "staged":
            raise NotStaged(f"cold: {path} is on tape; recall it first")
        handle: Readable = self.fs.open(f"{self.bucket}/{self._key(path)}", "rb")
        return handle

    def remove(self, path: str) -> None:
        self._call("delete_object", Key=self._key(path))

    def discard_partial(self, path: str) -> None:
        """Abort the uploads of ``path`` an interrupted store left open (never visible as a body)."""
        key = self._key(path)
        listing = self._call("list_multipart_uploads", Prefix=key)
        for upload in listing.get("Uploads", []):
            if upload["Key"] == key:
                self._call("abort_multipart_upload", Key=key, UploadId=upload["UploadId"])


def cold_tier(
    url: str, *, storage_class: str, delay: float, drives: int, clock: Clock = time.time
) -> ColdTier:
    """The cold tier's provider for its URL: a tape gateway for ``s3://``, else a folder."""
    if url.startswith("s3://"):
        return S3ColdTier(url, storage_class=storage_class)
    return FolderColdTier(url, delay=delay, drives=drives, clock=clock)


TierOrder = tuple[TierName, ...]


@dataclass(frozen=True)
class ArchiveTiers:
    """The archive's three tiers as the settings name them: where a reader finds a body now.

    Only URLs and numbers, so a reader holding it pickles to a worker process (the
    validator's pool); the tiers themselves are made when asked for."""

    hot: str
    warm: str
    cold: str
    storage_class: str = "DEEP_ARCHIVE"
    delay: float = 0.0
    drives: int = 1

    @classmethod
    def of(cls, settings: TierSettings) -> ArchiveTiers:
        return cls(
            settings.url("hot"),
            settings.url("warm"),
            settings.url("cold"),
            settings.cold_storage_class,
            settings.recall_delay,
            settings.drives,
        )

    def placed(self, clock: Clock = time.time) -> dict[TierName, Tier]:
        """Each tier by its name (the cold one as its URL's provider)."""
        return {
            "hot": FolderTier("hot", self.hot),
            "warm": FolderTier("warm", self.warm),
            "cold": self.cold_tier(clock),
        }

    def cold_tier(self, clock: Clock = time.time) -> ColdTier:
        return cold_tier(
            self.cold, storage_class=self.storage_class, delay=self.delay, drives=self.drives, clock=clock
        )

    def path_of(self, url: str) -> str:
        """The body's path relative to the archive root, from its intake URL (on the hot
        tier, as every event names it); a URL elsewhere is :class:`~shared.paths.PathEscape`."""
        return inside(self.hot, url)[len(self.hot.rstrip("/")) + 1 :]

    def locate(self, url: str) -> str:
        """Where the body named by its intake ``url`` can be read now: its URL on the hot or
        warm tier, or on the cold tier while a recall keeps it staged; :class:`NeedsRecall`
        if it is on tape alone; :class:`FileNotFoundError` if no tier holds it.

        Looked for from the fastest tier down. During a move a body is briefly on two tiers,
        the verified target and the source not yet removed: both hold the same bytes, and
        either is right (the reader's decryption authenticates every segment regardless)."""
        path = self.path_of(url)
        for name in ("hot", "warm"):
            tier = FolderTier(name, getattr(self, name))
            if tier.exists(path):
                return tier.url_of(path)
        cold = self.cold_tier()
        if cold.exists(path):
            where = cold.residence(path)
            if where.state == "staged":
                return cold.url_of(path)
            raise NeedsRecall(path, where.state)
        raise FileNotFoundError(f"no tier of the archive holds {path} (hot, warm or cold)")


NEEDS_RECALL = "needs_recall"
"""The dead-letter code of an event whose bodies are on tape: redriven once they are staged."""


def require_readable(tiers: ArchiveTiers, urls: list[str]) -> None:
    """Refuse (:class:`~shared.envelope.RefusedEvent`, ``needs_recall``) an event whose bodies
    are not all readable now, before anything is read or changed: a consumer never waits
    for tape, and a body on tape is never taken for a broken one (the validator would
    otherwise reject a good sample as unreadable). The bodies that need a recall are named."""
    cold: list[str] = []
    for url in urls:
        try:
            tiers.locate(url)
        except NeedsRecall as needs:
            cold.append(f"{needs.path} ({'being recalled' if needs.state == 'recalling' else 'on tape'})")
    if cold:
        raise RefusedEvent(
            NEEDS_RECALL,
            f"{len(cold)} file(s) are on tape and need a recall before they can be read: {', '.join(cold)}; "
            "redrive this event once file-staged announced them",
        )


__all__ = [
    "NEEDS_RECALL",
    "TIERS",
    "ArchiveTiers",
    "ColdTier",
    "FolderColdTier",
    "FolderTier",
    "NeedsRecall",
    "NotStaged",
    "Residence",
    "S3ColdTier",
    "Stored",
    "Tier",
    "TierError",
    "TierName",
    "cold_tier",
    "digest_of",
    "require_readable",
]
